"""NYSE trading sessions (exchange-calendars), the one calendar every stage uses."""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

import numpy as np
import polars as pl

CALENDAR_START = dt.date(1990, 1, 2)


@lru_cache(maxsize=1)
def _xnys():
    import exchange_calendars as xc

    return xc.get_calendar("XNYS", start=CALENDAR_START.isoformat())


@lru_cache(maxsize=1)
def all_sessions() -> tuple[dt.date, ...]:
    """Every XNYS session the calendar knows (from 1990 to about a year ahead)."""
    return tuple(d.date() for d in _xnys().sessions)


def sessions(start: dt.date, end: dt.date) -> list[dt.date]:
    """XNYS sessions in [start, end], both ends included."""
    lo = np.searchsorted(_ordinals(), start.toordinal(), side="left")
    hi = np.searchsorted(_ordinals(), end.toordinal(), side="right")
    return list(all_sessions()[lo:hi])


@lru_cache(maxsize=1)
def _ordinals() -> np.ndarray:
    return np.array([d.toordinal() for d in all_sessions()], dtype=np.int64)


def session_index(days: pl.Series | list[dt.date]) -> np.ndarray:
    """Global index of each session in the calendar (a stable clock for rebalance schedules).

    Raises ValueError for a date that is not a session.
    """
    ords = (
        np.array([d.toordinal() for d in days], dtype=np.int64)
        if isinstance(days, list)
        else (days.cast(pl.Date).cast(pl.Int32).to_numpy().astype(np.int64) + dt.date(1970, 1, 1).toordinal())
    )
    idx = np.searchsorted(_ordinals(), ords)
    idx = np.clip(idx, 0, len(_ordinals()) - 1)
    if not np.array_equal(_ordinals()[idx], ords):
        bad = [dt.date.fromordinal(int(o)) for o in ords[_ordinals()[idx] != ords][:5]]
        raise ValueError(f"not NYSE sessions: {bad}")
    return idx


def sessions_through(days: pl.Series) -> np.ndarray:
    """Number of calendar sessions on or before each date (vectorized; any date, session or not)."""
    ords = days.cast(pl.Date).cast(pl.Int32).to_numpy().astype(np.int64) + dt.date(1970, 1, 1).toordinal()
    return np.searchsorted(_ordinals(), ords, side="right")


def shift_sessions(day: dt.date, n: int) -> dt.date:
    """The session n sessions after (n > 0) or before (n < 0) the session `day`, clamped to the calendar."""
    i = int(session_index([day])[0])
    ords = _ordinals()
    return dt.date.fromordinal(int(ords[min(max(i + n, 0), len(ords) - 1)]))


def sessions_between(a: dt.date, b: dt.date) -> int:
    """Number of sessions in (a, b]: the lag in sessions of data dated a, seen at b."""
    ords = _ordinals()
    return int(
        np.searchsorted(ords, b.toordinal(), side="right")
        - np.searchsorted(ords, a.toordinal(), side="right")
    )


def non_session_weekdays(start: dt.date, end: dt.date) -> list[dt.date]:
    """Weekdays in [start, end] that are not sessions (holidays, special closures)."""
    sess = set(sessions(start, end))
    out, d = [], start
    while d <= end:
        if d.weekday() < 5 and d not in sess:
            out.append(d)
        d += dt.timedelta(days=1)
    return out
