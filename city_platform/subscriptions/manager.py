"""Placeholder until the subscription manager lands."""

from __future__ import annotations

from city_platform.broker import ContextBroker


class SubscriptionManager:
    def __init__(self, broker: ContextBroker) -> None:
        self.broker = broker

    async def __aenter__(self) -> SubscriptionManager:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None
