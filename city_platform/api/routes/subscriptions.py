"""``/subscriptions`` (CIM 009 5.8): being written."""

from fastapi import APIRouter

router = APIRouter(prefix="/subscriptions", tags=["subscriptions"])
