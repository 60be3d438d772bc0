"""The temporal query parameters (CIM 009 6.3.10 timerel/timeAt/endTimeAt, 6.3.11 lastN,
timeproperty; 4.5.19 aggrMethods and aggrPeriodDuration) from their grammars: they parse or
raise BadRequestData, and a parsed period can be laid out from any instant (never an
OverflowError or a ValueError from datetime, which were 500s)."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

from hypothesis import example, given
from hypothesis import strategies as st

from city_platform.errors import BadRequestData, PlatformError
from city_platform.temporal import parse_time_filter
from city_platform.temporal_aggr import AGGR_METHODS, parse_aggregation, parse_duration

AMOUNTS = st.one_of(st.integers(0, 100), st.integers(0, 10**12), st.integers(0, 10**30))


@st.composite
def durations(draw: st.DrawFn) -> str:
    """ISO 8601 durations (4.5.19) with any amounts: P[n]Y[n]M[n]DT[n]H[n]M[n]S and P[n]W."""
    if draw(st.integers(0, 9)) == 5:
        return f"P{draw(AMOUNTS)}W"
    text = "P"
    for unit in "YMD":
        if draw(st.booleans()):
            text += f"{draw(AMOUNTS)}{unit}"
    if draw(st.booleans()):
        text += "T"
        for unit in "HM":
            if draw(st.booleans()):
                text += f"{draw(AMOUNTS)}{unit}"
        if draw(st.booleans()):
            text += f"{draw(AMOUNTS)}{draw(st.sampled_from(['', '.5', '.000001']))}S"
    return text


INSTANTS = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC)
)


@given(text=st.one_of(durations(), st.text(max_size=12)), origin=INSTANTS, k=st.integers(0, 3))
@example(text="P1000000000D", origin=datetime(2026, 1, 1, tzinfo=UTC), k=1)  # past timedelta
@example(text="P999999999W", origin=datetime(2026, 1, 1, tzinfo=UTC), k=1)  # past a C int
@example(text="P" + "9" * 5000 + "D", origin=datetime(2026, 1, 1, tzinfo=UTC), k=1)  # digits
@example(text="P9000Y", origin=datetime(2026, 1, 1, tzinfo=UTC), k=1)  # past the year 9999
@example(text="P999999999D", origin=datetime(2026, 1, 1, tzinfo=UTC), k=1)
def test_periods_parse_and_lay_out_or_are_bad_request_data(
    text: str, origin: datetime, k: int
) -> None:
    try:
        period = parse_duration(text)
        period.times(origin, k)
    except BadRequestData:
        pass


@given(
    methods=st.one_of(
        st.lists(st.sampled_from([*AGGR_METHODS, "x", "", " sum"]), max_size=3).map(",".join),
        st.lists(st.text(max_size=4)),
        st.none(),
        st.integers(),
    ),
    duration=st.one_of(st.none(), durations(), st.integers()),
)
def test_aggregation_parameters_parse_or_are_bad_request_data(
    methods: object, duration: object
) -> None:
    with contextlib.suppress(PlatformError):
        parse_aggregation(methods, duration)


TIMES = st.one_of(
    INSTANTS.map(lambda d: d.isoformat()),
    st.sampled_from(["2026-01-01T00:00:00Z", "2026-01-01", "2026-01-01T00:00:00", "now", "",
                     "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"]),
    st.text(max_size=8),
)  # fmt: skip


@given(
    timerel=st.one_of(st.none(), st.sampled_from(["before", "after", "between", "x"])),
    time_at=st.none() | TIMES,
    end_time_at=st.none() | TIMES,
    last_n=st.one_of(st.none(), st.integers().map(str), st.text(max_size=4), st.just("9" * 5000)),
    timeproperty=st.one_of(st.none(), st.sampled_from(["observedAt", "modifiedAt", "x"])),
)
# In the years 0 and 10000 once in UTC: an OverflowError (500) before, BadRequestData now.
@example(timerel="before", time_at="0001-01-01T00:00:00+14:00", end_time_at=None,
         last_n=None, timeproperty=None)  # fmt: skip
@example(timerel="between", time_at="2026-01-01T00:00:00Z",
         end_time_at="9999-12-31T23:59:59-14:00", last_n=None, timeproperty=None)  # fmt: skip
def test_time_filters_parse_or_are_bad_request_data(
    timerel: str | None,
    time_at: str | None,
    end_time_at: str | None,
    last_n: str | None,
    timeproperty: str | None,
) -> None:
    with contextlib.suppress(PlatformError):
        parse_time_filter(
            timerel=timerel,
            time_at=time_at,
            end_time_at=end_time_at,
            last_n=last_n,
            timeproperty=timeproperty,
        )
