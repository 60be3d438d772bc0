"""Southbound transports, one module per protocol: MQTT, CoAP ingest (push), CoAP observe."""
