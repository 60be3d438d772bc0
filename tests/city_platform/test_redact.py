"""api/redact.py: which stored values are masked for tokens below admin."""

from __future__ import annotations

from city_platform.api.redact import MASK, redact_registration, redact_subscription


def test_subscription_credentials_masked() -> None:
    """Credential-like receiverInfo keys and a URI's userinfo password become ***."""
    doc = {
        "id": "urn:x",
        "notification": {
            "format": "normalized",
            "endpoint": {
                "uri": "mqtts://gw:pw0rd@[::1]:8883/city/notify",
                "receiverInfo": [
                    {"key": "authorization", "value": "Bearer a"},
                    {"key": "X-Api-Key", "value": "k"},
                    {"key": "Cookie", "value": "c"},
                    {"key": "X-Auth-Token", "value": "t"},
                    {"key": "Prefer", "value": "body=json"},
                ],
            },
        },
    }
    out = redact_subscription(doc)
    endpoint = out["notification"]["endpoint"]
    assert endpoint["uri"] == f"mqtts://gw:{MASK}@[::1]:8883/city/notify"
    assert [i["value"] for i in endpoint["receiverInfo"]] == [MASK] * 4 + ["body=json"]
    assert doc["notification"]["endpoint"]["receiverInfo"][0]["value"] == "Bearer a"  # a copy
    assert out["notification"]["format"] == "normalized"


def test_plain_uri_and_missing_parts_unchanged() -> None:
    doc = {"notification": {"endpoint": {"uri": "http://[::1]:8081/notify"}}}
    assert redact_subscription(doc) == doc
    assert redact_subscription({"id": "x"}) == {"id": "x"}
    user_only = {"notification": {"endpoint": {"uri": "mqtt://gw@[::1]/t"}}}
    assert redact_subscription(user_only) == user_only


def test_registration_context_source_info_masked() -> None:
    reg = {
        "endpoint": "http://u:p@[::1]:9/",
        "contextSourceInfo": [{"key": "Authorization", "value": "x"}, {"key": "A", "value": "b"}],
    }
    out = redact_registration(reg)
    assert out["endpoint"] == f"http://u:{MASK}@[::1]:9/"
    assert out["contextSourceInfo"] == [
        {"key": "Authorization", "value": MASK},
        {"key": "A", "value": "b"},
    ]
