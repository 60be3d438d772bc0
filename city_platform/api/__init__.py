"""The HTTP API: FastAPI app, dependencies and one route module per NGSI-LD resource."""
