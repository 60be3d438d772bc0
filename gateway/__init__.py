"""The gateway: transports, the pure normalizer and the uplink to the platform (issue 3)."""
