"""Device profiles as data files, one per device kind (read by gateway.profiles)."""
