"""The city's web dashboard (``testbed dashboard``): a map, live values, charts, the device
table, streetlight actuation and the conformance reports, for a workshop room's projector.

It talks to the platform and to the gateway over HTTP only (DESIGN.md section 2: city_platform
imports neither gateway nor devices): one NGSI-LD subscription feeds its ``/notify``, which fans
out to the browsers by Server-Sent Events (``/events``); the user's own platform token (pasted at
login, kept in an HttpOnly, SameSite=Strict cookie session) is used for everything the user
reads or changes.  Every asset is shipped under ``static/`` (Leaflet, uPlot: ``static/vendor``):
the page works offline.  docs/dashboard.md.
"""

from city_platform.dashboard.app import DashboardConfig, create_app

__all__ = ["DashboardConfig", "create_app"]
