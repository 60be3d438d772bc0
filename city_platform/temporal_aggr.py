"""The aggregated temporal representation (CIM 009 4.5.19; ``aggrMethods`` and
``aggrPeriodDuration`` of 5.7.3, 5.7.4 and the TemporalQuery of 5.2.21).

The instances of an attribute in the requested time window are cut into periods of
``aggrPeriodDuration`` (an ISO 8601 duration; ``PT0S`` or none: one period spanning the whole
window) and each requested method is applied to the values of each period.  An attribute then
reads ``{"type": "Property", "avg": [[value, startAt, endAt], ...], ...}``, one member per
method, with one object per datasetId as in the simplified form (4.5.9).

Choices where 4.5.19 leaves room (the ones Stellio, the reference of the ETSI suite, makes):
periods start at ``timeAt`` for ``after``/``between`` and otherwise at the entity's oldest
instance in the window; periods without instances are left out; booleans count as 1 and 0;
``sum``, ``avg``, ``stddev`` and ``sumsq`` apply to numbers (and booleans) only, ``min``/``max``
also to strings (DateTimes in their UTC form compare as strings), and a method that does not
apply to the values gives ``null``; ``stddev`` is the sample standard deviation (n - 1), 0 for
a single value.
"""

from __future__ import annotations

import calendar
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from city_platform import entities as ent
from city_platform.errors import BadRequestData
from city_platform.storage.base import HistoryRow

AGGR_METHODS = ("totalCount", "distinctCount", "sum", "avg", "min", "max", "stddev", "sumsq")
MAX_PERIODS = 100_000  # calendar periods walked for one attribute (12 a year for P1M)
_DURATION = re.compile(
    r"^P(?!$)(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)D)?"
    r"(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$"
)
_WEEKS = re.compile(r"^P(\d+)W$")


@dataclass(frozen=True)
class Duration:
    """An ISO 8601 duration P[n]Y[n]M[n]DT[n]H[n]M[n]S or P[n]W (4.5.19)."""

    months: int = 0
    delta: timedelta = timedelta(0)

    @property
    def zero(self) -> bool:
        return self.months == 0 and self.delta == timedelta(0)

    def times(self, start: datetime, k: int) -> datetime:
        """``start`` plus ``k`` times the duration: calendar months first (the day clamped to
        the month's last), then the rest; counted from ``start`` so that months do not drift."""
        try:
            if self.months:
                total = start.year * 12 + start.month - 1 + self.months * k
                year, month = divmod(total, 12)
                month += 1
                day = min(start.day, _days_in(year, month))
                start = start.replace(year=year, month=month, day=day)
            return start + self.delta * k
        except (OverflowError, ValueError):  # past the year 9999 (datetime's range)
            raise BadRequestData(
                f"aggrPeriodDuration: {k} period(s) from {show(start)} end after the year 9999"
            ) from None


def _days_in(year: int, month: int) -> int:
    return calendar.monthrange(year, month)[1]  # December 9999 too (no datetime of 10000)


def parse_duration(text: str) -> Duration:
    """``aggrPeriodDuration``: 400 BadRequestData unless an ISO 8601 duration (4.5.19)."""
    weeks = _WEEKS.match(text)
    if weeks:
        try:
            return Duration(delta=timedelta(weeks=int(weeks[1])))
        except (OverflowError, ValueError):
            raise BadRequestData(
                f"aggrPeriodDuration {text[:40]!r} is too long a duration"
            ) from None
    m = _DURATION.match(text)
    if m is None or text.endswith("T"):
        raise BadRequestData(
            f"aggrPeriodDuration must be an ISO 8601 duration such as PT1H or P1D, got {text!r}"
        )
    years, months, days, hours, minutes, seconds = m.groups()
    try:  # more digits than int() reads, or more days than a timedelta holds (999,999,999)
        return Duration(
            months=int(years or 0) * 12 + int(months or 0),
            delta=timedelta(
                days=int(days or 0),
                hours=int(hours or 0),
                minutes=int(minutes or 0),
                seconds=float(seconds or 0),
            ),
        )
    except (OverflowError, ValueError):
        raise BadRequestData(f"aggrPeriodDuration {text[:40]!r} is too long a duration") from None


@dataclass(frozen=True)
class Aggregation:
    """What an aggregated temporal request asks for: methods and the period."""

    methods: tuple[str, ...]
    period: Duration


def parse_aggregation(methods: object, duration: object) -> Aggregation:
    """``aggrMethods`` (a comma list, or in a TemporalQuery an array of strings) and
    ``aggrPeriodDuration``; both are checked, ``aggrMethods`` is mandatory (4.5.19)."""
    if methods is None:
        raise BadRequestData("the aggregated temporal representation needs aggrMethods (4.5.19)")
    if isinstance(methods, str):
        names = [m.strip() for m in methods.split(",")]
    elif isinstance(methods, list) and all(isinstance(m, str) for m in methods):
        names = [m.strip() for n in methods for m in n.split(",")]
    else:
        raise BadRequestData("aggrMethods must be a comma separated list of strings")
    if not names or not all(names):
        raise BadRequestData("aggrMethods must not be empty or contain empty names")
    unknown = [n for n in names if n not in AGGR_METHODS]
    if unknown:
        raise BadRequestData(
            f"aggrMethods: unknown method(s) {', '.join(unknown)}; "
            f"the methods are {', '.join(AGGR_METHODS)}"
        )
    if duration is None:
        period = Duration()
    elif isinstance(duration, str):
        period = parse_duration(duration)
    else:
        raise BadRequestData("aggrPeriodDuration must be a string (an ISO 8601 duration)")
    return Aggregation(tuple(dict.fromkeys(names)), period)


def show(when: datetime) -> str:
    """A period bound as the API writes DateTimes: UTC, ``Z``, fractions only when present."""
    text = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if when.microsecond:
        text += f".{when.microsecond:06d}".rstrip("0")
    return text + "Z"


def key_time(key: str) -> datetime:
    """A sortable UTC key (entities.utc_key) as an aware datetime."""
    return datetime.fromisoformat(key)


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float) and math.isfinite(value):
        return value
    return None


def _apply(method: str, values: Sequence[Any]) -> Any:
    """One aggregation method over the values of one period (4.5.19)."""
    if method == "totalCount":
        return len(values)
    if method == "distinctCount":
        return len({orjson.dumps(v, option=orjson.OPT_SORT_KEYS) for v in values})
    numbers = [_number(v) for v in values]
    if any(n is None for n in numbers):
        if method in ("min", "max") and all(isinstance(v, str) for v in values):
            return min(values) if method == "min" else max(values)
        return None
    nums = [n for n in numbers if n is not None]
    if method == "sum":
        return sum(nums)
    if method == "avg":
        return sum(nums) / len(nums)
    if method == "min":
        return min(nums)
    if method == "max":
        return max(nums)
    if method == "sumsq":
        return sum(n * n for n in nums)
    # stddev: the sample standard deviation
    if len(nums) < 2:
        return 0.0
    mean = sum(nums) / len(nums)
    return math.sqrt(sum((n - mean) ** 2 for n in nums) / (len(nums) - 1))


@dataclass(frozen=True)
class Window:
    """The bounds of the aggregation: where periods start, where a PT0S period ends."""

    start: datetime | None  # None: the entity's oldest instance
    end: datetime | None  # None: the entity's newest instance


def _periods(
    times: list[tuple[datetime, Any]], origin: datetime, end: datetime, period: Duration
) -> list[tuple[datetime, datetime, list[Any]]]:
    """(start, end, values) of the periods holding instances; ``times`` is sorted."""
    if period.zero:
        return [(origin, end, [v for _, v in times])] if times else []
    out: list[tuple[datetime, datetime, list[Any]]] = []
    k = 0
    start, stop = origin, period.times(origin, 1)
    for when, value in times:
        if when < origin:
            continue
        if when >= stop:
            if period.months:
                while when >= period.times(origin, k + 1):
                    k += 1
                    if k > MAX_PERIODS:
                        raise BadRequestData(
                            f"aggrPeriodDuration is too short: more than {MAX_PERIODS} periods"
                        )
            else:
                k = (when - origin) // period.delta
            start, stop = period.times(origin, k), period.times(origin, k + 1)
        if not out or out[-1][0] != start:
            out.append((start, stop, []))
        out[-1][2].append(value)
    return out


def aggregate_attribute(
    rows: Iterable[HistoryRow],
    aggregation: Aggregation,
    window: Window,
    *,
    timeproperty: str,
    oldest: datetime,
    newest: datetime,
) -> Any:
    """The aggregated representation of one attribute's rows (per datasetId)."""
    groups: dict[str | None, tuple[str, list[tuple[datetime, Any]]]] = {}
    for row in rows:
        key = row.observed_at if timeproperty == "observedAt" else row.modified_at
        value = ent.instance_value(row.instance)
        if key is None or value is None or value == ent.NGSI_LD_NULL:
            continue  # a deleted instance (deletedAt) has no value to aggregate
        atype = row.instance.get("type", "Property")
        groups.setdefault(row.dataset_id, (atype, []))[1].append((key_time(key), value))
    origin = window.start or oldest
    end = window.end or newest
    items: list[dict[str, Any]] = []
    for dataset_id, (atype, times) in groups.items():
        times.sort(key=lambda t: t[0])
        periods = _periods(times, origin, end, aggregation.period)
        item: dict[str, Any] = {"type": atype}
        if dataset_id is not None:
            item["datasetId"] = dataset_id
        for method in aggregation.methods:
            item[method] = [[_apply(method, vals), show(a), show(b)] for a, b, vals in periods]
        items.append(item)
    return items[0] if len(items) == 1 else items
