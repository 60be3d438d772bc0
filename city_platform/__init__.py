"""The smart-city platform: an NGSI-LD (ETSI GS CIM 009) context broker subset."""
