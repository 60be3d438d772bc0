"""Lab 07: how long a battery lasts, from bytes per reading and how often a device sends.

    python docs/labs/code/battery.py --bytes 172 --interval 300

Every figure of the radio below is an ASSUMPTION, of the kind a datasheet gives for a 2.4 GHz
IEEE 802.15.4 radio (250 kbit/s, 3 V; transmit 17.4 mA, receive/listen 18.8 mA, as a
CC2420-class chip's datasheet lists) and a small sensor board (5 uA asleep, 5 mA for 20 ms to
wake, measure and encode); replace them with your datasheets. The model is deliberately
simple: the device sleeps, wakes to measure and send a reading (its bytes at the radio's bit
rate), then listens for --listen-ms for the answer (CoAP ACK, MQTT PUBACK) before it sleeps
again. A device that must keep a connection open (MQTT over TCP) cannot sleep between
readings: --always-listening shows what that costs.
"""

from __future__ import annotations

import argparse

VOLTS = 3.0
BIT_RATE = 250_000  # bit/s, IEEE 802.15.4 at 2.4 GHz
TX_MA, RX_MA = 17.4, 18.8  # assumed radio currents (datasheet-like)
SLEEP_MA, AWAKE_MA, AWAKE_S = 0.005, 5.0, 0.020  # assumed board: asleep, and per reading
SHELF_DAYS = 3650  # an alkaline cell loses its charge by itself in about ten years


def main() -> None:
    parser = argparse.ArgumentParser(description="battery life from bytes per reading (lab 07)")
    parser.add_argument("--bytes", type=float, required=True, help="on the wire per reading")
    parser.add_argument("--interval", type=float, default=300, help="seconds between readings")
    parser.add_argument("--listen-ms", type=float, default=10, help="listening for the answer")
    parser.add_argument("--idle-bytes-per-hour", type=float, default=0, help="keep-alives")
    parser.add_argument("--always-listening", action="store_true", help="radio never sleeps")
    parser.add_argument("--battery-mah", type=float, default=2500, help="2 x AA alkaline")
    parser.add_argument("--bit-rate", type=float, default=BIT_RATE, help="the radio's bit/s")
    parser.add_argument("--tx-ma", type=float, default=TX_MA, help="the radio's transmit mA")
    args = parser.parse_args()

    per_day = 86_400 / args.interval
    tx_s = (args.bytes * per_day + args.idle_bytes_per_hour * 24) * 8 / args.bit_rate
    rx_s = 86_400 - tx_s if args.always_listening else per_day * args.listen_ms / 1000
    sleep_s = max(0.0, 86_400 - tx_s - rx_s)
    awake_s = per_day * AWAKE_S
    mas = tx_s * args.tx_ma + rx_s * RX_MA + sleep_s * SLEEP_MA + awake_s * AWAKE_MA  # mA s per day
    mah_per_day = mas / 3600
    joules_per_byte = args.tx_ma / 1000 * VOLTS * 8 / args.bit_rate
    print(f"energy to send one byte: {joules_per_byte * 1e6:.2f} uJ (assumed radio)")
    print(f"readings per day: {per_day:.0f}, radio sending {tx_s:.2f} s/day", end="")
    print(f", listening {rx_s:.0f} s/day")
    print(f"charge per day: {mah_per_day:.3f} mAh")
    days = args.battery_mah / mah_per_day
    print(f"battery ({args.battery_mah:.0f} mAh) lasts: {days:.0f} days", end="")
    print(
        " (longer than its shelf life: the radio is not what limits it)"
        if days > SHELF_DAYS
        else ""
    )


if __name__ == "__main__":
    main()
