"""Bars as a panel of numpy matrices in *row layout*, shared by the feature library and the labels.

Row layout: one column per symbol (sorted names), row n holds the symbol's n-th bar (its own sessions with
data, in date order), NaN below its last bar. A per-symbol window of k rows is then k consecutive rows of
a column, a lag is a shift along the rows, and warm-up is the first rows: nothing ever mixes two symbols,
and a symbol's column is the same whatever the other symbols hold. *Bars order* is the output order,
(date, symbol); `Panel.bars` takes a matrix to it and `Panel.matrix` back.

A full panel (every symbol has a bar on every date) given in (date, symbol) order, the warehouse's layout,
is recognized without hashing a single symbol: its row layout is the input columns reshaped, with no
copy, and the bars order is the input order. Any other input is validated and scattered once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

__all__ = ["INPUTS", "Panel", "prepare_panel", "shift_rows"]

INPUTS = ("open", "high", "low", "close", "volume")
_EPOCH = dt.date(1970, 1, 1)


@dataclass(frozen=True)
class Panel:
    """Bars validated and laid out once (see the module docstring).

    `values`: column -> (rows, symbols) float64 matrix in row layout (volume converted exactly below 2**53);
    `symbols`: the sorted names of the matrix columns; `length`: bars per symbol; `bar_day`: each bar's
    date as an index into the sorted distinct `days` (days since 1970-01-01), bars order; `bar_sid`: each
    bar's symbol as an index into `symbols`; `cells` and `date_cells`: each bar's flat index in the row
    layout and in the date layout (dates, symbols), bars order (None: the identity, a full panel, whose
    two layouts are one).
    """

    values: dict[str, np.ndarray]
    symbols: pl.Series
    length: np.ndarray
    days: np.ndarray
    bar_day: np.ndarray
    bar_sid: np.ndarray
    cells: np.ndarray | None
    date_cells: np.ndarray | None

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, symbols) of the row layout."""
        return (int(self.length.max()) if self.length.size else 0, self.symbols.len())

    def keys(self, bars: np.ndarray | None = None) -> list[pl.Series]:
        """The `date` and `symbol` columns of the given bars (indices in bars order; None: every bar),
        built from the codes (gathering from the few distinct values is much cheaper than from a column)."""
        day, sid = (self.bar_day, self.bar_sid) if bars is None else (self.bar_day[bars], self.bar_sid[bars])
        return [
            pl.Series("date", self.days[day], pl.Int32).cast(pl.Date),
            self.symbols.gather(pl.Series(sid, dtype=pl.UInt32)).alias("symbol"),
        ]

    def bars(self, matrix: np.ndarray, lo: int = 0, hi: int | None = None) -> np.ndarray:
        """A row-layout matrix as a vector in bars order (bars lo .. hi - 1 of it)."""
        flat = matrix.reshape(-1)
        return flat[lo:hi] if self.cells is None else flat[self.cells[lo:hi]]

    def matrix(self, values: np.ndarray, fill: float | int = np.nan) -> np.ndarray:
        """A vector in bars order as a row-layout matrix (`fill` below each symbol's last bar)."""
        if self.cells is None:
            return values.reshape(self.shape)
        out = np.full(self.shape, fill, dtype=values.dtype)
        out.reshape(-1)[self.cells] = values
        return out

    def by_date(self, matrix: np.ndarray) -> np.ndarray:
        """A row-layout matrix in date layout: row d holds the date `days[d]` of every symbol, NaN where
        a symbol has no bar (for same-date cross-sections)."""
        if self.cells is None:
            return matrix
        out = np.full((self.days.size, self.symbols.len()), np.nan)
        out.reshape(-1)[self.date_cells] = self.bars(matrix)
        return out

    def from_date(self, matrix: np.ndarray, fill: float | int = np.nan) -> np.ndarray:
        """A date-layout matrix back in row layout (`fill` below each symbol's last bar)."""
        if self.cells is None:
            return matrix
        return self.matrix(matrix.reshape(-1)[self.date_cells], fill)

    def require(self, columns: Sequence[str]) -> None:
        missing = [c for c in columns if c not in self.values]
        if missing:
            raise ValueError(f"panel lacks columns {missing} (prepare_panel(ohlcv, columns=...))")


def shift_rows(x: np.ndarray, n: int, fill: float | int = np.nan) -> np.ndarray:
    """A row-layout matrix n rows later (n > 0: each symbol's value n bars earlier, a lag; n < 0: |n| bars
    later, a lead), `fill` where the symbol has no such bar."""
    if n == 0:
        return x
    out = np.full_like(x, fill)
    if n > 0:
        out[n:] = x[:-n]
    else:
        out[:n] = x[-n:]
    return out


def _strictly_increasing(a: np.ndarray) -> bool:
    return bool((np.diff(a) > 0).all())


def _full_panel(symbol: pl.Series, day: np.ndarray) -> int:
    """Number of symbols if the bars are a full panel in (date, symbol) order (each date lists the same
    strictly increasing symbols), else 0. Costs one comparison of the symbol column with itself shifted."""
    n_bars = day.size
    if n_bars == 0 or not (np.diff(day) >= 0).all():
        return 0
    width = int(np.searchsorted(day, day[0], side="right"))
    if n_bars % width:
        return 0
    grid = day.reshape(-1, width)
    if not ((grid == grid[:, :1]).all() and _strictly_increasing(grid[:, 0])):
        return 0
    head = symbol.slice(0, width)
    if not (head.is_sorted() and head.n_unique() == width):
        return 0
    if n_bars > width and not (symbol.slice(width) == symbol.slice(0, n_bars - width)).all():
        return 0
    return width


def prepare_panel(ohlcv: pl.DataFrame, columns: Sequence[str] = INPUTS) -> Panel:
    """Validate the bars and lay them out once, for `compute_features` and `compute_labels`.

    Only the numeric `columns` are taken. Raises ValueError for missing columns, null keys or duplicate
    (symbol, date) rows.
    """
    columns = tuple(dict.fromkeys(columns))
    missing = [c for c in ("symbol", "date", *columns) if c not in ohlcv.columns]
    if missing:
        raise ValueError(f"ohlcv frame lacks columns {missing}")
    symbol, date = ohlcv.get_column("symbol").cast(pl.String), ohlcv.get_column("date").cast(pl.Date)
    if symbol.null_count() or date.null_count():
        raise ValueError("ohlcv has null symbol or date")
    raw = {c: ohlcv.get_column(c).cast(pl.Float64).to_numpy() for c in columns}
    day = date.cast(pl.Int32).to_numpy()
    width = _full_panel(symbol, day)
    if width:
        days = day[::width].copy()
        return Panel(
            values={c: v.reshape(-1, width) for c, v in raw.items()},
            symbols=symbol.slice(0, width),
            length=np.full(width, days.size, dtype=np.int64),
            days=days,
            bar_day=np.repeat(np.arange(days.size, dtype=np.int32), width),
            bar_sid=np.tile(np.arange(width, dtype=np.uint32), days.size),
            cells=None,
            date_cells=None,
        )
    syms = symbol.unique().sort()
    sid = symbol.cast(pl.Enum(syms)).to_physical().to_numpy().astype(np.int64)
    days, di = np.unique(day, return_inverse=True)
    key = di.astype(np.int64) * max(syms.len(), 1) + sid
    order = np.argsort(key, kind="stable")
    key = key[order]
    dup = np.flatnonzero(np.diff(key) == 0)
    if dup.size:
        rows = [(syms[int(sid[order[i]])], _EPOCH + dt.timedelta(days=int(day[order[i]]))) for i in dup[:5]]
        raise ValueError(f"ohlcv has duplicate (symbol, date) rows, e.g. {rows}")
    bar_sid, bar_day = sid[order], di[order].astype(np.int32)
    # row of each bar in its symbol's column: its rank among the symbol's bars (dates ascend in bars order)
    length = np.bincount(bar_sid, minlength=syms.len()).astype(np.int64)
    by_symbol = np.argsort(bar_sid, kind="stable")
    row = np.empty(bar_sid.size, dtype=np.int64)
    row[by_symbol] = np.arange(bar_sid.size) - np.repeat(np.cumsum(length) - length, length)
    cells = row * syms.len() + bar_sid
    shape = (int(length.max()) if length.size else 0, syms.len())
    values = {}
    for c, v in raw.items():
        m = np.full(shape, np.nan)
        m.reshape(-1)[cells] = v[order]
        values[c] = m
    return Panel(
        values=values,
        symbols=syms,
        length=length,
        days=days.astype(np.int32),
        bar_day=bar_day,
        bar_sid=bar_sid.astype(np.uint32),
        cells=cells,
        date_cells=key,
    )
