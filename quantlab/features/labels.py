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

from quantlab.features.library import _DAY, _SID, FEATURE_NAMES, Panel, _as_panel

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

LONG_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date(),
    "symbol": pl.String(),
    "label": pl.String(),
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


def _finite(e: pl.Expr) -> pl.Expr:
    return pl.when(e.is_finite()).then(e)


def compute_labels(ohlcv: pl.DataFrame | Panel, names: Sequence[str] = LABEL_NAMES) -> pl.DataFrame:
    """Forward labels in long format ``date, symbol, label, horizon, asof_date, value`` (see LONG_SCHEMA).

    Only rows whose value is known (non-null, finite) are returned, sorted by (date, symbol, label order in
    ``names``). Uses the adjusted ``close``; ``ohlcv`` is an ohlcv frame in any row order (same validation as
    compute_features) or a `Panel` of one (`quantlab.features.library.prepare_panel`, shared with
    compute_features). Only the requested labels (and the forward returns they derive from) are computed.
    """
    if isinstance(names, str):
        raise TypeError("names must be a sequence of label names, not a string")
    names = tuple(dict.fromkeys(names))
    unknown = [n for n in names if n not in LABELS]
    if unknown:
        raise ValueError(f"unknown labels {unknown}; known: {list(LABEL_NAMES)}")
    panel = _as_panel(ohlcv, ("close",))
    if not names or panel.frame.height == 0:
        return pl.DataFrame(schema=LONG_SCHEMA)
    close, day, rem = pl.col("close"), pl.col(_DAY), pl.col("_rem")
    horizons = sorted({LABELS[n].horizon for n in names})  # every label derives from fwd_ret_<horizon>
    # rows in (symbol, date) order: a plain shift(-h) is the symbol's own row h sessions later wherever the
    # symbol has h more rows (`_rem >= h`); exact, and much cheaper than shift().over(). Until the rows are
    # in (date, symbol) order a missing value is NaN (return) or -1 (as-of day): columns without a validity
    # mask gather several times faster.
    ret = {h: pl.col(f"_ret{h}") for h in horizons}
    asof = {h: pl.col(f"_asof{h}") for h in horizons}
    df = panel.frame.select(
        _SID,
        _DAY,
        *[
            pl.when(rem >= h).then(close.shift(-h) / close - 1).fill_null(float("nan")).alias(f"_ret{h}")
            for h in horizons
        ],
        *[pl.when(rem >= h).then(day.shift(-h)).otherwise(-1).alias(f"_asof{h}") for h in horizons],
    )
    if panel.back is not None:  # to (date, symbol) order, where `.over(_DAY)` windows are slices
        df = df[panel.back].with_columns(day.set_sorted())
    df = df.with_columns(
        *[_finite(ret[h]).alias(f"_ret{h}") for h in horizons],
        *[pl.when(asof[h] >= 0).then(asof[h]) for h in horizons],
    )
    r5, a5 = pl.col("_ret5"), pl.col("_asof5")
    exprs: dict[str, tuple[pl.Expr, pl.Expr]] = {
        "fwd_ret_1": (pl.col("_ret1"), pl.col("_asof1")),
        "fwd_ret_5": (r5, a5),
        "fwd_ret_20": (pl.col("_ret20"), pl.col("_asof20")),
        "fwd_dir_5": ((r5 > 0).cast(pl.Float64), a5),
        "fwd_excess_5": (r5 - r5.mean().over(_DAY), pl.when(r5.is_not_null()).then(a5).max().over(_DAY)),
    }
    # long rows in (date, symbol, label) order: the (rows, labels) matrices of values and as-of days, raveled
    # row-major; keep the known values. Columns go to numpy without validity masks (null: NaN, as-of 0).
    k = len(names)
    wide = df.select(
        *[exprs[n][0].cast(pl.Float64).fill_null(float("nan")).alias(f"v{i}") for i, n in enumerate(names)],
        *[exprs[n][1].cast(pl.Int32).fill_null(0).alias(f"a{i}") for i, n in enumerate(names)],
    )
    values = np.column_stack([wide.get_column(f"v{i}").to_numpy() for i in range(k)]).ravel()
    known = np.flatnonzero(~np.isnan(values))
    row, li = np.divmod(known, k)
    li = pl.Series(li.astype(np.uint32))
    asof = np.column_stack([wide.get_column(f"a{i}").to_numpy() for i in range(k)]).ravel()[known]
    date, symbol = panel.keys(df.get_column(_SID).to_numpy()[row], df.get_column(_DAY).to_numpy()[row])
    return pl.DataFrame(
        [
            date,
            symbol,
            pl.Series("label", names, pl.String).gather(li),
            pl.Series("horizon", [LABELS[n].horizon for n in names], pl.Int32).gather(li),
            pl.Series("asof_date", asof + np.int32(panel.first_day), pl.Int32).cast(pl.Date),
            pl.Series("value", values[known]),
        ]
    )
