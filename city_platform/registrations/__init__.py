"""Context source registrations, their subscriptions and distributed operations (CIM 009 5.9,
5.10, 5.11, 4.3.6)."""
