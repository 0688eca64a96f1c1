"""Standard feature library: a registry of point-in-time features, vectorized numpy on a panel.

Conventions (the contract every feature here honours):

* Input is an ``ohlcv`` frame (symbol, date, open, high, low, close, close_raw, adj_factor, volume) in any row
  order. "Rows" means the symbol's own rows (the sessions it has data for), so a late-listed symbol simply
  warms up later; windows are counted in rows, not calendar days.
* Only trailing fixed-length windows of the symbol's rows are used (no ewm, no expanding or cumulative
  statistics), plus same-date cross-sections of such values. A value at date t therefore depends only on data
  at or before t: it is bit-identical whatever the data after t. Each symbol is one column of the panel
  (`quantlab.features.panel`), so nothing crosses symbols but the same-date cross-sections, which sum only the
  symbols present. A window's mean and variance are computed from the window alone
  (`quantlab.features.windows`): computing on a frame that starts earlier gives the same value up to float
  rounding (the sums are split at blocks counted from the symbol's first row), provided the symbol's rows in
  the window are the same (and, for cross-sectional features, the other symbols' too).
* ``lookback`` counts the rows a value needs including the current one (a 1-day return needs 2). A value is
  null while the symbol has fewer than ``lookback`` rows, whatever the expression would give.
* Null policy: null during warm-up, when an input inside the window is null, and wherever the arithmetic gives
  NaN or +-inf (division by zero: flat prices, zero volume, zero close). A flat window has a standard
  deviation of exactly 0; dispersion-type denominators (std, mean absolute return, universe variance) below
  1e-12 of their natural scale also count as zero, so a near-flat window gives null, not a huge ratio. All
  feature columns are Float64.
* Prices are the adjusted columns. Every price feature is invariant to scaling a symbol's whole price history
  by a constant, so re-adjusting history for a later split or dividend does not change past values.
  ``volume`` is used as given (``volume_ratio_20`` jumps around a split if volume is not split-adjusted).
* ``kind="cross_sectional"`` marks features whose value also depends on the other symbols present on the same
  dates (cross-sectional ranks, beta to the equal-weight universe): compute them on the intended universe.

Performance: `prepare_panel` validates and lays the bars out once (a `Panel` can be passed to both
`compute_features` and `quantlab.features.labels.compute_labels`); the warehouse's full (date, symbol) panel
needs no reordering at all. Features and their helpers are numpy on the panel's matrices, each computed
once; only the same-date cross-sections (ranks, z-scores, the universe return) run in polars, in bars order.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Literal

import numpy as np
import polars as pl

from quantlab.features.panel import INPUTS, Panel, prepare_panel, shift_rows
from quantlab.features.windows import window_mean, window_std
from quantlab.metrics import PERIODS_PER_YEAR
from quantlab.parallel import by_slices, tasks

__all__ = [
    "FEATURES",
    "FEATURE_NAMES",
    "MAX_LOOKBACK",
    "FeatureDef",
    "INPUTS",
    "Panel",
    "compute_features",
    "feature_set_version",
    "prepare_panel",
]

#: Bump when a library-wide convention changes (null policy, output layout): it salts every version hash.
LIBRARY_VERSION = "features/2"  # 2: windows from the window alone (quantlab.features.windows)

ANNUALIZATION = math.sqrt(PERIODS_PER_YEAR)  # the convention lives in quantlab.metrics
_EPS = 1e-12  # relative size below which a denominator (dispersion, mean absolute return) counts as zero


@dataclass(frozen=True)
class FeatureDef:
    """Declaration of one feature; bump ``version`` whenever its definition changes."""

    name: str
    lookback: int
    description: str
    kind: Literal["time_series", "cross_sectional"]
    version: str = "1"


# ---------------------------------------------------------------------------------------------------------
# Building blocks: numpy on row-layout matrices (`quantlab.features.panel`: a column per symbol, row n its
# n-th bar), so a lag is a shift along the rows and every window is a slice of one symbol's column.
def _finite(x: np.ndarray) -> np.ndarray:
    """`x` with its non-finite values set to NaN, in place (`x` is a new matrix)."""
    np.copyto(x, np.nan, where=~np.isfinite(x))
    return x


def _div(num: np.ndarray, den: np.ndarray, scale: np.ndarray | float = 1.0) -> np.ndarray:
    """num / den, NaN where |den| <= _EPS * |scale|: a dispersion or mean absolute return that is zero up to
    rounding (a near-flat window) must give null, not a huge ratio."""
    out = num / den
    np.copyto(out, np.nan, where=np.abs(den) <= _EPS * np.abs(scale))  # broadcasts like num / den
    return out


class _Cells:
    """The matrices of one computation, each computed once on first use: the panel's inputs, the helpers
    (`_HELPERS`) and the cleaned features (warm-up and non-finite values NaN). Thread-safe: a matrix two
    threads want is computed by one while the other waits (the reads form a DAG, so locks never cycle). A
    feature may read only the inputs, the helpers it declares (and what they read) and the features it
    `needs`; `release` frees a matrix nothing left to compute reads."""

    def __init__(self, panel: Panel) -> None:
        self.panel = panel
        self._cache: dict[str, np.ndarray] = {}
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._thread = threading.local()  # .reads: stack of (helpers, features) allowed to this thread

    def _get(self, key: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
        value = self._cache.get(key)
        if value is None:
            with self._guard:
                lock = self._locks.setdefault(key, threading.Lock())
            with lock:
                value = self._cache.get(key)
                if value is None:
                    value = self._cache[key] = compute()
        return value

    def _allowed(self) -> tuple[frozenset[str], tuple[str, ...]] | None:
        reads = getattr(self._thread, "reads", None)
        return reads[-1] if reads else None

    def __getitem__(self, name: str) -> np.ndarray:
        if name in self.panel.values:
            return self.panel.values[name]
        allowed = self._allowed()
        if allowed is not None and name not in allowed[0]:
            raise KeyError(f"helper {name} is read but not declared")
        return self._get(name, lambda: _HELPERS[name][0](self))

    def feature(self, name: str) -> np.ndarray:
        allowed = self._allowed()
        if allowed is not None and name not in allowed[1]:
            raise KeyError(f"feature {name} is read but not in `needs`")

        def compute() -> np.ndarray:
            impl = _IMPL[name]
            reads = self._thread.__dict__.setdefault("reads", [])
            reads.append((_closure(impl.helpers), impl.needs))
            try:
                return _clean(impl.compute(self), FEATURES[name].lookback)
            finally:
                reads.pop()

        return self._get(f"feature:{name}", compute)

    def release(self, helpers: Sequence[str] = (), features: Sequence[str] = ()) -> None:
        with self._guard:
            for key in (*helpers, *(f"feature:{f}" for f in features)):
                self._cache.pop(key, None)


def _clean(x: np.ndarray, lookback: int) -> np.ndarray:
    """NaN (null in the output) on the first lookback - 1 rows of each symbol and wherever not finite; in
    place (`x` is a new matrix)."""
    x[: lookback - 1] = np.nan
    return _finite(x)


def _row_sum(x: np.ndarray) -> np.ndarray:
    """Sum of each row's non-NaN values, added one after the other in column order: a NaN (a symbol
    without a value, or absent from the frame) changes no bit of the sum."""
    if x.shape[1] == 0:
        return np.zeros(x.shape[0])
    return np.add.accumulate(np.where(np.isnan(x), 0.0, x), axis=1)[:, -1]


def _xs_mean(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, count) of each row's non-NaN values, as columns (date layout: a same-date cross-section)."""
    n = (~np.isnan(x)).sum(axis=1, keepdims=True)
    return _row_sum(x)[:, None] / n, n


def _xs_rank(x: np.ndarray) -> np.ndarray:
    """(rank - 1) / (n - 1) of each value among its row's n non-NaN values, ties averaged."""
    n_cols = x.shape[1]
    order = np.argsort(x, axis=1, kind="stable")  # NaN last
    v = np.take_along_axis(x, order, axis=1)
    col = np.arange(n_cols)
    starts = np.ones(v.shape, dtype=bool)
    starts[:, 1:] = v[:, 1:] != v[:, :-1]
    ends = np.ones(v.shape, dtype=bool)
    ends[:, :-1] = starts[:, 1:]
    first = np.maximum.accumulate(np.where(starts, col, 0), axis=1)
    last = np.minimum.accumulate(np.where(ends, col, n_cols)[:, ::-1], axis=1)[:, ::-1]
    n = (~np.isnan(x)).sum(axis=1, keepdims=True)
    out = np.empty(x.shape)
    np.put_along_axis(out, order, (first + last) / 2.0 / (n - 1), axis=1)
    out[np.isnan(x)] = np.nan
    return out


def _xs_z(x: np.ndarray) -> np.ndarray:
    """(x - mean) / std (ddof=1) of each row's non-NaN values; NaN on zero dispersion."""
    mean, n = _xs_mean(x)
    dev = x - mean
    std = np.sqrt(_row_sum(dev * dev)[:, None] / (n - 1))
    return _div(dev, std, mean)


def _universe_mean(c: _Cells) -> np.ndarray:
    """Equal-weight mean return of the date over the symbols with a return, where the symbol has one."""
    r = c.panel.by_date(c["_r"])
    mean, _ = _xs_mean(r)
    return c.panel.from_date(np.where(np.isnan(r), np.nan, mean))


def _cross_section(op: Callable[[np.ndarray], np.ndarray], src: str) -> Callable[[_Cells], np.ndarray]:
    """`op` over the same-date cross-sections (rows of the date layout) of the (cleaned) feature `src`."""
    return lambda c: c.panel.from_date(by_slices(op, c.panel.by_date(c.feature(src)), axis=0))


# Intermediate matrices read by the features: name -> (computation, the helpers it reads). Declared reads
# are enforced (`_Cells`), so a computation can free a helper as soon as nothing left to compute reads it.
_HELPERS: dict[str, tuple[Callable[[_Cells], np.ndarray], tuple[str, ...]]] = {
    "_pc": (lambda c: shift_rows(c["close"], 1), ()),  # previous close of the symbol
    "_r": (lambda c: _finite(c["close"] / c["_pc"] - 1), ("_pc",)),  # daily simple return, NaN if not finite
    "_tr": (
        lambda c: np.maximum(c["high"], c["_pc"]) - np.minimum(c["low"], c["_pc"]),
        ("_pc",),
    ),  # true range
    "_um": (_universe_mean, ("_r",)),
    "_r_abs": (lambda c: np.abs(c["_r"]), ("_r",)),
    "_vol_prev": (lambda c: shift_rows(c["volume"], 1), ()),
    "_um2": (lambda c: c["_um"] * c["_um"], ("_um",)),
    "_r_um": (lambda c: c["_r"] * c["_um"], ("_r", "_um")),
    # trailing windows (quantlab.features.windows)
    "_sma20": (lambda c: window_mean(c["close"], 20), ()),
    "_sma50": (lambda c: window_mean(c["close"], 50), ()),
    "_sma200": (lambda c: window_mean(c["close"], 200), ()),
    "_sd20": (lambda c: window_std(c["close"], 20), ()),
    "_mr14": (lambda c: window_mean(c["_r"], 14), ("_r",)),  # mean return, 14 days
    "_mr60": (lambda c: window_mean(c["_r"], 60), ("_r",)),
    "_absr14": (lambda c: window_mean(c["_r_abs"], 14), ("_r_abs",)),  # mean |return|, 14 days
    "_sdr20": (lambda c: window_std(c["_r"], 20), ("_r",)),  # std of returns
    "_sdr60": (lambda c: window_std(c["_r"], 60), ("_r",)),
    "_mtr14": (lambda c: window_mean(c["_tr"], 14), ("_tr",)),  # mean true range
    "_mvol20": (lambda c: window_mean(c["_vol_prev"], 20), ("_vol_prev",)),  # previous 20 rows' mean volume
    "_mu60": (lambda c: window_mean(c["_um"], 60), ("_um",)),
    "_muu60": (lambda c: window_mean(c["_um2"], 60), ("_um2",)),
    "_mru60": (lambda c: window_mean(c["_r_um"], 60), ("_r_um",)),
}


@cache
def _closure(helpers: tuple[str, ...]) -> frozenset[str]:
    """The helpers and every helper they read, transitively."""
    seen: set[str] = set()
    todo = list(helpers)
    while todo:
        h = todo.pop()
        if h not in seen:
            seen.add(h)
            todo.extend(_HELPERS[h][1])
    return frozenset(seen)


def _ret(n: int, skip: int = 0) -> Callable[[_Cells], np.ndarray]:
    """close(t - skip) / close(t - n) - 1."""
    return lambda c: shift_rows(c["close"], skip) / shift_rows(c["close"], n) - 1


def _rsi14(c: _Cells) -> np.ndarray:
    # mean gain / (mean gain + mean loss), with gain + loss = |r| and gain - loss = r
    return np.clip(50.0 * (1.0 + _div(c["_mr14"], c["_absr14"])), 0.0, 100.0)


def _zscore20(c: _Cells) -> np.ndarray:
    sma = c["_sma20"]
    return _div(c["close"] - sma, c["_sd20"], sma)


def _beta60(c: _Cells) -> np.ndarray:
    mu, muu = c["_mu60"], c["_muu60"]
    cov = c["_mru60"] - c["_mr60"] * mu
    return _div(cov, muu - mu * mu, muu)  # the 1/(n-1) factors of cov and var cancel


@dataclass(frozen=True)
class _Impl:
    defn: FeatureDef
    compute: Callable[[_Cells], np.ndarray]  # a new row-layout matrix (cleaned in place)
    helpers: tuple[str, ...] = ()  # helpers read
    needs: tuple[str, ...] = ()  # features read (cleaned)


def _ts(
    name: str,
    lookback: int,
    description: str,
    compute: Callable[[_Cells], np.ndarray],
    helpers: tuple[str, ...] = (),
    kind: Literal["time_series", "cross_sectional"] = "time_series",
    needs: tuple[str, ...] = (),
) -> _Impl:
    return _Impl(FeatureDef(name, lookback, description, kind), compute, helpers, needs)


def _xs(
    name: str, lookback: int, description: str, op: Callable[[np.ndarray], np.ndarray], src: str
) -> _Impl:
    """A same-date cross-section of another (cleaned) feature."""
    defn = FeatureDef(name, lookback, description, "cross_sectional")
    return _Impl(defn, _cross_section(op, src), needs=(src,))


_IMPLS: tuple[_Impl, ...] = (
    _ts("ret_1", 2, "1-day simple return of close", lambda c: c["_r"].copy(), ("_r",)),
    _ts("ret_5", 6, "5-day simple return of close", _ret(5)),
    _ts("mom_20", 21, "20-day simple return of close", _ret(20)),
    _ts("mom_60", 61, "60-day simple return of close", _ret(60)),
    _ts("mom_120", 121, "120-day simple return of close", _ret(120)),
    _ts(
        "vol_20",
        21,
        "annualized (sqrt 252) sample std (ddof=1) of the last 20 daily returns",
        lambda c: c["_sdr20"] * ANNUALIZATION,
        ("_sdr20",),
    ),
    _ts(
        "vol_60",
        61,
        "annualized (sqrt 252) sample std (ddof=1) of the last 60 daily returns",
        lambda c: c["_sdr60"] * ANNUALIZATION,
        ("_sdr60",),
    ),
    _ts(
        "rsi_14",
        15,
        "RSI in [0, 100] over a fixed window of the last 14 daily returns: 100 * mean gain / "
        "(mean gain + mean loss) with simple averages (not Wilder's recursive smoothing, so it depends only "
        "on the window); null if all 14 returns are zero",
        _rsi14,
        ("_mr14", "_absr14"),
    ),
    _ts(
        "atr_14",
        15,
        "mean true range (max(high, prev close) - min(low, prev close)) of the last 14 days divided by close",
        lambda c: c["_mtr14"] / c["close"],
        ("_mtr14",),
    ),
    _ts(
        "ma_gap_20",
        20,
        "close / 20-day simple moving average of close - 1",
        lambda c: c["close"] / c["_sma20"] - 1,
        ("_sma20",),
    ),
    _ts(
        "ma_gap_50",
        50,
        "close / 50-day simple moving average of close - 1",
        lambda c: c["close"] / c["_sma50"] - 1,
        ("_sma50",),
    ),
    _ts(
        "zscore_20",
        20,
        "(close - 20-day mean of close) / 20-day sample std of close (ddof=1), "
        "today included; null if the window is flat",
        _zscore20,
        ("_sma20", "_sd20"),
    ),
    _ts(
        "volume_ratio_20",
        21,
        "volume / mean volume of the previous 20 days (today excluded, so a spike is "
        "measured against an uncontaminated baseline)",
        lambda c: c["volume"] / c["_mvol20"],
        ("_mvol20",),
    ),
    _ts("gap_1", 2, "open / previous close - 1", lambda c: c["open"] / c["_pc"] - 1, ("_pc",)),
    _ts("range_1", 1, "(high - low) / close", lambda c: (c["high"] - c["low"]) / c["close"]),
    _xs(
        "xs_rank_mom_20",
        21,
        "percentile rank of mom_20 among symbols with a value that date, "
        "(rank - 1) / (n - 1) in [0, 1], ties averaged; null if fewer than 2 symbols",
        _xs_rank,
        "mom_20",
    ),
    _xs(
        "xs_z_mom_20",
        21,
        "cross-sectional z-score of mom_20 that date (sample std, ddof=1); null if fewer "
        "than 2 symbols or zero dispersion",
        _xs_z,
        "mom_20",
    ),
    _ts(
        "beta_60",
        61,
        "beta of the last 60 daily returns to the equal-weight universe return of the same "
        "dates (mean return of the symbols in the frame with a return that date): rolling cov / var",
        _beta60,
        ("_mr60", "_mu60", "_muu60", "_mru60"),
        kind="cross_sectional",
    ),
    # ---- added with the feature store (appended: the order of the names above is part of the table layout)
    _ts("mom_252", 253, "252-day (12-month) simple return of close", _ret(252)),
    _ts(
        "mom_12_1",
        253,
        "12-1 momentum: simple return of close from 252 days ago to 21 days ago, close(t-21) / close(t-252) "
        "- 1 (the classic skip-month momentum: the last month, prone to short-term reversal, is left out)",
        _ret(252, skip=21),
    ),
    _ts(
        "ma_gap_200",
        200,
        "close / 200-day simple moving average of close - 1",
        lambda c: c["close"] / c["_sma200"] - 1,
        ("_sma200",),
    ),
    _ts(
        "vol_ratio_20_60",
        61,
        "vol_20 / vol_60: short- over long-window volatility (> 1 when volatility is rising); null if "
        "vol_60 is zero (a flat window)",
        lambda c: _div(c.feature("vol_20"), c.feature("vol_60")),
        needs=("vol_20", "vol_60"),
    ),
    _xs(
        "xs_rank_mom_60",
        61,
        "percentile rank of mom_60 among symbols with a value that date, "
        "(rank - 1) / (n - 1) in [0, 1], ties averaged; null if fewer than 2 symbols",
        _xs_rank,
        "mom_60",
    ),
    _xs(
        "xs_z_vol_20",
        21,
        "cross-sectional z-score of vol_20 that date (sample std, ddof=1); null if fewer than 2 symbols or "
        "zero dispersion",
        _xs_z,
        "vol_20",
    ),
)
_IMPL: dict[str, _Impl] = {i.defn.name: i for i in _IMPLS}

FEATURES: dict[str, FeatureDef] = {i.defn.name: i.defn for i in _IMPLS}
FEATURE_NAMES: tuple[str, ...] = tuple(FEATURES)
MAX_LOOKBACK: int = max(d.lookback for d in FEATURES.values())


def _resolve(names: Sequence[str]) -> tuple[str, ...]:
    """Validate names, drop duplicates (first occurrence wins, order kept)."""
    if isinstance(names, str):
        raise TypeError("names must be a sequence of feature names, not a string")
    unknown = [n for n in names if n not in FEATURES]
    if unknown:
        raise ValueError(f"unknown features {unknown}; known: {list(FEATURE_NAMES)}")
    return tuple(dict.fromkeys(names))


def feature_set_version(names: Sequence[str] = FEATURE_NAMES) -> str:
    """Short sha256 (12 hex) of the requested definitions: (name, lookback, version) plus the library version.

    Independent of the order and repetition of ``names`` (the set is canonicalized to registry order), stable
    across processes; changes when the set changes or when any requested definition is bumped.
    """
    wanted = set(_resolve(names))
    defs = [[d.name, d.lookback, d.version] for d in FEATURES.values() if d.name in wanted]
    payload = [LIBRARY_VERSION, *defs]
    return hashlib.sha256(json.dumps(payload, separators=(",", ":")).encode()).hexdigest()[:12]


def _as_panel(ohlcv: pl.DataFrame | Panel, columns: Sequence[str]) -> Panel:
    if isinstance(ohlcv, Panel):
        ohlcv.require(columns)
        return ohlcv
    return prepare_panel(ohlcv, columns)


def compute_features(ohlcv: pl.DataFrame | Panel, names: Sequence[str] = FEATURE_NAMES) -> pl.DataFrame:
    """Compute ``names`` for every input row: ``date, symbol, <features Float64>`` sorted by (date, symbol).

    ``ohlcv`` is an ohlcv frame or a `Panel` of one (`prepare_panel`, to share the preparation with
    `compute_labels`). See the module docstring for warm-up and null policy. Raises ValueError for unknown
    names, missing columns, null keys or duplicate (symbol, date) rows.
    """
    names = _resolve(names)
    panel = _as_panel(ohlcv, INPUTS)
    # each feature after the features it needs; a matrix is freed once nothing left reads it (the matrices
    # of a large panel are large, and fresh memory is slow to fault in)
    plan = list(dict.fromkeys(f for n in names for f in (*_IMPL[n].needs, n)))
    reads = {f: (_closure(_IMPL[f].helpers), _IMPL[f].needs) for f in plan}
    left = Counter(x for f in plan for x in (*reads[f][0], *reads[f][1]))
    cells = _Cells(panel)
    guard = threading.Lock()

    def run(f: str) -> pl.Series | None:
        column = (
            pl.Series(f, panel.bars(cells.feature(f)), pl.Float64, nan_to_null=True) if f in names else None
        )
        helpers, needs = reads[f]
        with guard:
            left.subtract((*helpers, *needs))
            done = [h for h in helpers if not left[h]], [x for x in (f, *needs) if not left[x]]
        cells.release(*done)
        return column

    with np.errstate(all="ignore"):
        columns = dict(zip(plan, tasks(run, plan), strict=True))
    return pl.DataFrame([*panel.keys(), *[columns[n] for n in names]])
