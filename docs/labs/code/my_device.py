"""Lab 05: a noise sensor of your own, in Python, speaking MQTT over TLS to the city.

    python docs/labs/code/my_device.py --count 3

connects to the city's broker as the device account noise-0901 (made in lab 01 with
`testbed secrets init --mqtt-device noise-0901`), and publishes a SenML JSON reading (RFC 8428)
to city/noise/noise-0901/up/senml-json every --interval seconds: the sound level LAeq in dB and
the device's position as the SenML names lat and lon, which the gateway turns into the
entity's location. Change the numbers, the position, the id; see the result in the platform.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

SECURITY = Path.home() / ".local/share/r197-testbed/city/security"  # testbed up's default


def reading(device: str, lat: float, lon: float) -> list[dict[str, object]]:
    """One SenML pack: base name and time once, then the records (RFC 8428 4.5)."""
    hour = time.localtime().tm_hour
    jitter = random.uniform(-3, 3)  # noqa: S311 - a measurement's noise, not a secret
    level = 45 + 15 * math.sin(math.pi * hour / 24) + jitter  # louder by day
    return [
        {
            "bn": f"urn:dev:r197:{device}:",
            "bt": time.time(),
            "n": "LAeq",
            "u": "dB",
            "v": round(level, 1),
        },
        {"n": "lat", "u": "lat", "v": lat},
        {"n": "lon", "u": "lon", "v": lon},
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description="a noise sensor of your own (lab 05)")
    parser.add_argument("--device", default="noise-0901", help="its id = its MQTT account")
    parser.add_argument("--host", default="::1")
    parser.add_argument("--port", type=int, default=8883)
    parser.add_argument("--ca", type=Path, default=SECURITY / "ca.pem")
    parser.add_argument("--passwords", type=Path, default=SECURITY / "mqtt-passwords.json")
    parser.add_argument("--lat", type=float, default=46.2044)
    parser.add_argument("--lon", type=float, default=6.1432)
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--interval", type=float, default=2.0)
    args = parser.parse_args()

    password = json.loads(args.passwords.read_text())[args.device]
    topic = f"city/noise/{args.device}/up/senml-json"
    status = f"city/noise/{args.device}/status"

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=args.device)
    client.username_pw_set(args.device, password)
    client.tls_set(ca_certs=str(args.ca))  # verifies the broker's certificate and host name
    client.will_set(status, "offline", qos=1, retain=True)  # if we vanish (lab 02)
    client.connect(args.host, args.port)
    client.loop_start()
    client.publish(status, "online", qos=1, retain=True).wait_for_publish(10)
    for n in range(args.count):
        pack = reading(args.device, args.lat, args.lon)
        sent = client.publish(topic, json.dumps(pack), qos=1)
        sent.wait_for_publish(10)  # QoS 1: until the broker's PUBACK
        print(f"sent {n + 1}/{args.count}: LAeq {pack[0]['v']} dB to {topic}", flush=True)
        if n + 1 < args.count:
            time.sleep(args.interval)
    client.publish(status, "offline", qos=1, retain=True).wait_for_publish(10)
    client.disconnect()  # a clean goodbye: the broker drops the will
    client.loop_stop()


if __name__ == "__main__":
    main()
