"""Property history also written to InfluxDB v2, through a durable outbox (docs/platform.md
"Time series in InfluxDB")."""
