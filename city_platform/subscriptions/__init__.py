"""Subscriptions and asynchronous HTTP notifications (CIM 009 5.8, 5.11)."""
