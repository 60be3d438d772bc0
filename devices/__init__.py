"""Simulated field devices speaking MQTT and CoAP over IPv6 (issue 3)."""
