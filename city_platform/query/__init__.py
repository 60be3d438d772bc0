"""Query languages of the NGSI-LD API: q (clause 4.9) and geo-queries (clause 4.10)."""
