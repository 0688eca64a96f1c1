"""Forward training labels with declared horizons, in long format keyed by the date they become known.

A label for decision date t with horizon h uses the symbol's close h rows (its sessions with data) later,
so it is only known at the close of that session: its ``asof_date``. Downstream storage partitions labels by
``asof_date`` and training must purge/embargo ``horizon`` sessions around any split (the as-of discipline).
Labels are never features: ``check_no_label_leakage`` guards feature lists (and the feature library itself
at import time).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from quantlab.features.library import FEATURE_NAMES, _as_panel, _finite, _xs_mean
from quantlab.features.panel import Panel, shift_rows
from quantlab.parallel import tasks

__all__ = [
    "LABELS",
    "LABEL_NAMES",
    "LONG_SCHEMA",
    "MAX_HORIZON",
    "LabelDef",
    "check_no_label_leakage",
    "compute_labels",
]


@dataclass(frozen=True)
class LabelDef:
    """Declaration of one forward label; ``horizon`` is in sessions (rows of the symbol)."""

    name: str
    horizon: int
    description: str


LABELS: dict[str, LabelDef] = {
    d.name: d
    for d in (
        LabelDef("fwd_ret_1", 1, "close(t+1) / close(t) - 1"),
        LabelDef("fwd_ret_5", 5, "close(t+5) / close(t) - 1"),
        LabelDef("fwd_ret_20", 20, "close(t+20) / close(t) - 1"),
        LabelDef("fwd_dir_5", 5, "1.0 if fwd_ret_5 > 0 else 0.0"),
        LabelDef(
            "fwd_excess_5",
            5,
            "fwd_ret_5 minus the equal-weight mean fwd_ret_5 of the symbols with a "
            "known fwd_ret_5 that date; asof_date is the latest asof_date among them",
        ),
    )
}
LABEL_NAMES: tuple[str, ...] = tuple(LABELS)
MAX_HORIZON: int = max(d.horizon for d in LABELS.values())

#: The output of `compute_labels`; `label` is an Enum of LABEL_NAMES (one byte per row: the frame is long),
#: the `labels` table stores it as a string.
LONG_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date(),
    "symbol": pl.String(),
    "label": pl.Enum(LABEL_NAMES),
    "horizon": pl.Int32(),
    "asof_date": pl.Date(),
    "value": pl.Float64(),
}


def check_no_label_leakage(feature_names: Iterable[str]) -> None:
    """Raise ValueError if any requested feature is a label name or looks forward (``fwd_`` prefix)."""
    bad = sorted({n for n in feature_names if n in LABELS or n.startswith("fwd_")})
    if bad:
        raise ValueError(f"forward-looking label(s) used as features: {bad}")


check_no_label_leakage(FEATURE_NAMES)  # the feature library itself must never contain a label


def compute_labels(ohlcv: pl.DataFrame | Panel, names: Sequence[str] = LABEL_NAMES) -> pl.DataFrame:
    """Forward labels in long format ``date, symbol, label, horizon, asof_date, value`` (see LONG_SCHEMA).

    Only rows whose value is known (non-null, finite) are returned, sorted by (date, symbol, label order in
    ``names``). Uses the adjusted ``close``; ``ohlcv`` is an ohlcv frame in any row order (same validation as
    compute_features) or a `Panel` of one (`quantlab.features.panel.prepare_panel`, shared with
    compute_features). Only the requested labels (and the forward returns they derive from) are computed.
    """
    if isinstance(names, str):
        raise TypeError("names must be a sequence of label names, not a string")
    names = tuple(dict.fromkeys(names))
    unknown = [n for n in names if n not in LABELS]
    if unknown:
        raise ValueError(f"unknown labels {unknown}; known: {list(LABEL_NAMES)}")
    panel = _as_panel(ohlcv, ("close",))
    if not names or panel.bar_day.size == 0:
        return pl.DataFrame(schema=LONG_SCHEMA)
    # on the panel's rows (a symbol's bars), the row h later is the symbol's own bar h sessions later
    close = panel.values["close"]
    day = panel.matrix(panel.bar_day, fill=-1)
    horizons = sorted({LABELS[n].horizon for n in names})  # every label derives from fwd_ret_<horizon>
    with np.errstate(all="ignore"):
        ret = {h: _finite(shift_rows(close, -h) / close - 1) for h in horizons}
        asof = {h: shift_rows(day, -h, -1) for h in horizons}
        columns: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # label -> (values, as-of day index)
        for n in names:
            h = LABELS[n].horizon
            if n.startswith("fwd_ret_"):
                columns[n] = (ret[h], asof[h])
            elif n == "fwd_dir_5":
                columns[n] = (np.where(np.isnan(ret[h]), np.nan, (ret[h] > 0).astype(np.float64)), asof[h])
            else:  # fwd_excess_5: against the same-date mean; known once every return in that mean is
                r = panel.by_date(ret[h])
                mean, _ = _xs_mean(r)
                known_at = np.fmax.reduce(panel.by_date(np.where(np.isnan(ret[h]), np.nan, asof[h])), axis=1)
                at = np.broadcast_to(np.nan_to_num(known_at, nan=-1).astype(np.int32)[:, None], r.shape)
                columns[n] = (panel.from_date(r - mean), panel.from_date(at, fill=-1))
    # long rows in (date, symbol, label) order, built in chunks of bars (in threads; small buffers are
    # reused, large ones are fresh memory every time)
    n_bars = panel.bar_day.size
    spans = [(lo, min(lo + _CHUNK, n_bars)) for lo in range(0, n_bars, _CHUNK)]
    frames = tasks(lambda span: _long_rows(panel, names, columns, *span), spans)
    return pl.concat(frames, rechunk=False) if len(frames) > 1 else frames[0]


_CHUNK = 1 << 20  # bars per chunk of long rows


def _long_rows(
    panel: Panel, names: tuple[str, ...], columns: dict[str, tuple[np.ndarray, np.ndarray]], lo: int, hi: int
) -> pl.DataFrame:
    """The long rows of bars [lo, hi): the known cells of their (bars, labels) matrices, row-major."""
    values = np.empty((hi - lo, len(names)))
    days = np.empty((hi - lo, len(names)), dtype=np.int32)
    for i, n in enumerate(names):
        values[:, i] = panel.bars(columns[n][0], lo, hi)
        days[:, i] = panel.bars(columns[n][1], lo, hi)
    known = ~np.isnan(values)
    # bar and label index of each long row, in small dtypes
    row = np.repeat(np.arange(lo, hi, dtype=np.int32), known.sum(axis=1))
    li = pl.Series(np.tile(np.arange(len(names), dtype=np.uint8), hi - lo)[known.reshape(-1)])
    return pl.DataFrame(
        [
            *panel.keys(row),
            pl.Series("label", names, LONG_SCHEMA["label"]).gather(li),
            pl.Series("horizon", [LABELS[n].horizon for n in names], pl.Int32).gather(li),
            pl.Series("asof_date", panel.days[days[known]], pl.Int32).cast(pl.Date),
            pl.Series("value", values[known]),
        ]
    )
