"""``/temporal/entities`` (CIM 009 5.6.11-5.6.16, 5.7.3-5.7.4): being written."""

from fastapi import APIRouter

router = APIRouter(prefix="/temporal", tags=["temporal"])
