"""The aggregation helpers of the temporal API (CIM 009 4.5.19): durations and methods."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from city_platform.errors import BadRequestData
from city_platform.temporal_aggr import AGGR_METHODS, parse_aggregation, parse_duration, show


def test_durations_parse_to_months_and_a_delta() -> None:
    """P[n]Y[n]M[n]DT[n]H[n]M[n]S and P[n]W, with fractional seconds."""
    d = parse_duration("P1Y2M3DT4H5M6.5S")
    assert d.months == 14
    assert d.delta == timedelta(days=3, hours=4, minutes=5, seconds=6.5)
    assert parse_duration("P2W").delta == timedelta(weeks=2)
    assert parse_duration("PT0S").zero
    assert parse_duration("P0D").zero
    assert not parse_duration("PT1M").zero


@pytest.mark.parametrize("text", ["", "P", "PT", "1H", "P1H", "PT1D", "P1W2D", "P-1D", "P1.5D"])
def test_bad_durations_are_bad_request_data(text: str) -> None:
    """Anything but the two ISO 8601 duration forms is refused."""
    with pytest.raises(BadRequestData):
        parse_duration(text)


def test_months_follow_the_calendar_from_the_origin() -> None:
    """Jan 31 + 1 month is the last of February (29 in a leap year), + 2 months Mar 31."""
    month = parse_duration("P1M")
    jan31 = datetime(2028, 1, 31, tzinfo=UTC)
    assert month.times(jan31, 1) == datetime(2028, 2, 29, tzinfo=UTC)
    assert month.times(jan31, 2) == datetime(2028, 3, 31, tzinfo=UTC)
    assert month.times(jan31, 11) == datetime(2028, 12, 31, tzinfo=UTC)
    assert month.times(jan31, 13) == datetime(2029, 2, 28, tzinfo=UTC)


def test_aggregation_parameters() -> None:
    """aggrMethods as a comma list or an array, deduplicated; aggrMethods is mandatory."""
    agg = parse_aggregation("avg,max,avg", "PT1H")
    assert agg.methods == ("avg", "max")
    assert agg.period.delta == timedelta(hours=1)
    assert parse_aggregation(["min", "sum,sumsq"], None).methods == ("min", "sum", "sumsq")
    assert parse_aggregation(",".join(AGGR_METHODS), None).period.zero
    for methods, duration in ((None, None), ("mean", None), ([1], None), ("avg", 3600)):
        with pytest.raises(BadRequestData):
            parse_aggregation(methods, duration)


def test_period_bounds_are_written_as_utc_date_times() -> None:
    """Whole seconds without a fraction, otherwise the digits that are there."""
    assert show(datetime(2026, 1, 1, 10, tzinfo=UTC)) == "2026-01-01T10:00:00Z"
    when = datetime(2026, 1, 1, 10, 0, 0, 250000, tzinfo=UTC)
    assert show(when) == "2026-01-01T10:00:00.25Z"
