"""One module per NGSI-LD resource, thin handlers named ``<verb>_<resource>``."""
