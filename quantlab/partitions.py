"""The one trading-day partitions definition every chain asset shares: NYSE sessions.

A partition key is an as-of date: what is materialized for day t uses only data available at its close.
Weekends and XNYS holidays (from exchange-calendars) are excluded. The first partition is
`QUANTLAB_PARTITIONS_START` (default 2000-01-03), early enough for the embedded data (from 2000-03-01).
"""

from __future__ import annotations

import datetime as dt
import os

import dagster as dg

from quantlab.calendar import all_sessions, non_session_weekdays

DEFAULT_START = "2000-01-03"


def trading_day_partitions(start: str | None = None) -> dg.DailyPartitionsDefinition:
    """Daily partitions on NYSE sessions from `start` (a session) to the last complete day."""
    start = start or os.environ.get("QUANTLAB_PARTITIONS_START", DEFAULT_START)
    first = dt.date.fromisoformat(start)
    holidays = non_session_weekdays(first, all_sessions()[-1])
    return dg.DailyPartitionsDefinition(
        start_date=first.isoformat(),
        exclusions=["0 0 * * 6", "0 0 * * 0", *[dt.datetime.combine(d, dt.time()) for d in holidays]],
    )


TRADING_DAYS = trading_day_partitions()


def partition_dates(context: dg.AssetExecutionContext) -> tuple[dt.date, dt.date]:
    """(first, last) as-of dates of the partition range this run materializes."""
    rng = context.partition_key_range
    return dt.date.fromisoformat(rng.start), dt.date.fromisoformat(rng.end)
