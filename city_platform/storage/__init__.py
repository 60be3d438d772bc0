"""Storage backends behind one interface (:class:`city_platform.storage.base.Storage`)."""

from city_platform.storage.base import EntityFilter, HistoryQuery, HistoryRow, Storage

__all__ = ["EntityFilter", "HistoryQuery", "HistoryRow", "Storage"]
