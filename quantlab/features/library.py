"""Standard feature library: a registry of point-in-time features computed with vectorized polars.

Conventions (the contract every feature here honours):

* Input is an ``ohlcv`` frame (symbol, date, open, high, low, close, close_raw, adj_factor, volume) in any row
  order. "Rows" means the symbol's own rows (the sessions it has data for), so a late-listed symbol simply
  warms up later; windows are counted in rows, not calendar days.
* Only trailing fixed-length windows of the symbol's rows are used (no ewm, no expanding or cumulative
  statistics), plus same-date cross-sections of such values. A value at date t therefore depends only on data
  at or before t: it is bit-identical whatever the data after t (each symbol's windows run on its own rows
  only, grouped by symbol, so no rolling state crosses symbols; a lag reads another symbol's row only in
  warm-up rows, which are null). It also depends only on its ``lookback`` window: computing
  on a frame that starts earlier gives the same value up to float rounding (polars updates rolling sums
  incrementally), provided the symbol's rows in the window are the same (and, for cross-sectional features,
  the other symbols' too).
* ``lookback`` counts the rows a value needs including the current one (a 1-day return needs 2). A value is
  null while the symbol has fewer than ``lookback`` rows, whatever the expression would give.
* Null policy: null during warm-up, when an input inside the window is null, and wherever the arithmetic gives
  NaN or +-inf (division by zero: flat prices, zero volume, zero close). Dispersion-type denominators (std,
  mean absolute return, universe variance) below 1e-12 of their natural scale also count as zero, because
  incremental rolling sums over a flat window leave ~1e-18 residues. All feature columns are Float64.
* Prices are the adjusted columns. Every price feature is invariant to scaling a symbol's whole price history
  by a constant, so re-adjusting history for a later split or dividend does not change past values.
  ``volume`` is used as given (``volume_ratio_20`` jumps around a split if volume is not split-adjusted).
* ``kind="cross_sectional"`` marks features whose value also depends on the other symbols present on the same
  dates (cross-sectional ranks, beta to the equal-weight universe): compute them on the intended universe.

Performance: `prepare_panel` validates and orders the bars once (a `Panel` can be passed to both
`compute_features` and `quantlab.features.labels.compute_labels`); lags are plain shifts on the
(symbol, date)-ordered frame, every per-symbol window runs in one parallel ``group_by``, and the columns are
reordered to (date, symbol) with NaN standing for null (validity masks make a gather several times slower).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl

from quantlab.metrics import PERIODS_PER_YEAR

__all__ = [
    "FEATURES",
    "FEATURE_NAMES",
    "MAX_LOOKBACK",
    "FeatureDef",
    "Panel",
    "compute_features",
    "feature_set_version",
    "prepare_panel",
]

#: Bump when a library-wide convention changes (null policy, output layout): it salts every version hash.
LIBRARY_VERSION = "features/1"

ANNUALIZATION = math.sqrt(PERIODS_PER_YEAR)  # the convention lives in quantlab.metrics
_EPS = 1e-12  # relative size below which a denominator (dispersion, mean absolute return) counts as zero
_EPOCH = dt.date(1970, 1, 1)


@dataclass(frozen=True)
class FeatureDef:
    """Declaration of one feature; bump ``version`` whenever its definition changes."""

    name: str
    lookback: int
    description: str
    kind: Literal["time_series", "cross_sectional"]
    version: str = "1"


# ---------------------------------------------------------------------------------------------------------
# Expression building blocks. Frames are processed sorted by (symbol, date) with a sorted UInt32 symbol code
# `_sid`, so each symbol's rows are one contiguous slice; helper columns start with an underscore.
_SID = "_sid"
_DAY = "_di"  # days since the first date of the frame
_C, _O, _H, _L = pl.col("close"), pl.col("open"), pl.col("high"), pl.col("low")
_PC = pl.col("_pc")  # previous close of the symbol
_R = pl.col("_r")  # daily simple return close / previous close - 1 (null if not finite)


def _finite(e: pl.Expr) -> pl.Expr:
    return pl.when(e.is_finite()).then(e)


def _div(num: pl.Expr, den: pl.Expr, scale: pl.Expr | float = 1.0) -> pl.Expr:
    """num / den, null where |den| <= _EPS * |scale|: a flat window can leave a ~1e-18 residue instead of an
    exact 0 in an incrementally updated rolling sum, and dividing by it would give garbage, not null."""
    tol = _EPS * (scale.abs() if isinstance(scale, pl.Expr) else abs(scale))
    return pl.when(den.abs() > tol).then(num / den)


# Intermediate columns: name -> (stage, expression, intermediates it reads). Stages 0-2 run on the whole
# frame, one with_columns each (row-wise expressions, and `_um`, the same-date cross-section). Stage 3
# (_WINDOWS) holds every per-symbol window: expressions evaluated on each symbol's rows alone, all in one
# `group_by(_sid).agg(...)` (polars runs them in parallel, faster than one `.over(_sid)` each; same kernels
# on the same slices, so the same bits). Anything a feature reads more than once is materialized here,
# because eager polars would otherwise evaluate a repeated expression once per occurrence.
_HELPERS: dict[str, tuple[int, Callable[[], pl.Expr], tuple[str, ...]]] = {
    # previous close of the symbol: rows are in (symbol, date) order, so a plain shift is the symbol's own
    # previous row wherever one exists (`_n > 0`); exact, and much cheaper than shift().over()
    "_pc": (0, lambda: pl.when(pl.col("_n") > 0).then(_C.shift(1)), ()),
    "_r": (1, lambda: _finite(_C / _PC - 1), ("_pc",)),
    "_tr": (
        1,
        lambda: pl.when(_PC.is_not_null()).then(  # true range
            pl.max_horizontal(_H, _PC) - pl.min_horizontal(_L, _PC)
        ),
        ("_pc",),
    ),
    # equal-weight universe return of the date, kept only where the symbol itself has a return
    "_um": (2, lambda: pl.when(_R.is_not_null()).then(_R.mean().over(_DAY)), ("_r",)),
    # per-symbol windows (stage _WINDOWS)
    "_sma20": (3, lambda: _C.rolling_mean(20), ()),
    "_sma50": (3, lambda: _C.rolling_mean(50), ()),
    "_sma200": (3, lambda: _C.rolling_mean(200), ()),
    "_sd20": (3, lambda: _C.rolling_std(20, ddof=1), ()),
    "_mr14": (3, lambda: _R.rolling_mean(14), ("_r",)),  # mean return, 14 days
    "_mr60": (3, lambda: _R.rolling_mean(60), ("_r",)),
    "_absr14": (3, lambda: _R.abs().rolling_mean(14), ("_r",)),  # mean |return|, 14 days
    "_sdr20": (3, lambda: _R.rolling_std(20, ddof=1), ("_r",)),  # std of returns
    "_sdr60": (3, lambda: _R.rolling_std(60, ddof=1), ("_r",)),
    "_mtr14": (3, lambda: pl.col("_tr").rolling_mean(14), ("_tr",)),  # mean true range
    # mean volume of the previous 20 rows (today excluded)
    "_mvol20": (3, lambda: pl.col("volume").cast(pl.Float64).shift(1).rolling_mean(20), ()),
    "_mu60": (3, lambda: pl.col("_um").rolling_mean(60), ("_um",)),
    "_muu60": (3, lambda: (pl.col("_um") ** 2).rolling_mean(60), ("_um",)),
    "_mru60": (3, lambda: (_R * pl.col("_um")).rolling_mean(60), ("_r", "_um")),
}
_WINDOWS = 3


def _lag(e: pl.Expr, n: int) -> pl.Expr:
    """`e` n rows earlier in the symbol: a plain shift, valid wherever `_n >= n` (the symbol has n earlier
    rows); elsewhere it reads another symbol's row, which only ever lands in warm-up rows that _clean nulls
    (a value using a lag n has a lookback > n)."""
    return e.shift(n) if n else e


def _ret(n: int, skip: int = 0) -> pl.Expr:
    """close(t - skip) / close(t - n) - 1."""
    return _lag(_C, skip) / _lag(_C, n) - 1


def _vol(n: int) -> pl.Expr:
    return pl.col(f"_sdr{n}") * ANNUALIZATION


def _rsi14() -> pl.Expr:
    # mean gain / (mean gain + mean loss), with gain + loss = |r| and gain - loss = r
    return (50.0 * (1.0 + _div(pl.col("_mr14"), pl.col("_absr14")))).clip(0.0, 100.0)


def _zscore20() -> pl.Expr:
    sma = pl.col("_sma20")
    return _div(_C - sma, pl.col("_sd20"), sma)


def _beta60() -> pl.Expr:
    mu, muu = pl.col("_mu60"), pl.col("_muu60")
    cov = pl.col("_mru60") - pl.col("_mr60") * mu
    return _div(cov, muu - mu**2, muu)  # the 1/(n-1) factors of cov and var cancel


def _volume_ratio20() -> pl.Expr:
    return pl.col("volume").cast(pl.Float64) / pl.col("_mvol20")


def _xs_rank(src: str) -> pl.Expr:
    x = pl.col(src)
    return (x.rank("average").over(_DAY) - 1.0) / (x.count().over(_DAY) - 1.0)


def _xs_z(src: str) -> pl.Expr:
    x = pl.col(src)
    mean = x.mean().over(_DAY)
    return _div(x - mean, x.std(ddof=1).over(_DAY), mean)


@dataclass(frozen=True)
class _Impl:
    defn: FeatureDef
    expr: Callable[[], pl.Expr]
    helpers: tuple[str, ...] = ()  # helper columns read
    needs: tuple[str, ...] = ()  # features read (derived stage, after the per-symbol one)


def _ts(
    name: str,
    lookback: int,
    description: str,
    expr: Callable[[], pl.Expr],
    helpers: tuple[str, ...] = (),
    kind: Literal["time_series", "cross_sectional"] = "time_series",
) -> _Impl:
    return _Impl(FeatureDef(name, lookback, description, kind), expr, helpers)


def _xs(
    name: str,
    lookback: int,
    description: str,
    expr: Callable[[], pl.Expr],
    needs: tuple[str, ...],
    kind: Literal["time_series", "cross_sectional"] = "cross_sectional",
) -> _Impl:
    """A feature computed from other (cleaned) features after the per-symbol stage, rows in (date, symbol)
    order: same-date cross-sections, or row-wise combinations (``kind="time_series"``)."""
    return _Impl(FeatureDef(name, lookback, description, kind), expr, (), needs)


_IMPLS: tuple[_Impl, ...] = (
    _ts("ret_1", 2, "1-day simple return of close", lambda: _R, ("_r",)),
    _ts("ret_5", 6, "5-day simple return of close", lambda: _ret(5)),
    _ts("mom_20", 21, "20-day simple return of close", lambda: _ret(20)),
    _ts("mom_60", 61, "60-day simple return of close", lambda: _ret(60)),
    _ts("mom_120", 121, "120-day simple return of close", lambda: _ret(120)),
    _ts(
        "vol_20",
        21,
        "annualized (sqrt 252) sample std (ddof=1) of the last 20 daily returns",
        lambda: _vol(20),
        ("_sdr20",),
    ),
    _ts(
        "vol_60",
        61,
        "annualized (sqrt 252) sample std (ddof=1) of the last 60 daily returns",
        lambda: _vol(60),
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
        lambda: pl.col("_mtr14") / _C,
        ("_mtr14",),
    ),
    _ts(
        "ma_gap_20",
        20,
        "close / 20-day simple moving average of close - 1",
        lambda: _C / pl.col("_sma20") - 1,
        ("_sma20",),
    ),
    _ts(
        "ma_gap_50",
        50,
        "close / 50-day simple moving average of close - 1",
        lambda: _C / pl.col("_sma50") - 1,
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
        _volume_ratio20,
        ("_mvol20",),
    ),
    _ts("gap_1", 2, "open / previous close - 1", lambda: _O / _PC - 1, ("_pc",)),
    _ts("range_1", 1, "(high - low) / close", lambda: (_H - _L) / _C),
    _xs(
        "xs_rank_mom_20",
        21,
        "percentile rank of mom_20 among symbols with a value that date, "
        "(rank - 1) / (n - 1) in [0, 1], ties averaged; null if fewer than 2 symbols",
        lambda: _xs_rank("mom_20"),
        ("mom_20",),
    ),
    _xs(
        "xs_z_mom_20",
        21,
        "cross-sectional z-score of mom_20 that date (sample std, ddof=1); null if fewer "
        "than 2 symbols or zero dispersion",
        lambda: _xs_z("mom_20"),
        ("mom_20",),
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
    _ts("mom_252", 253, "252-day (12-month) simple return of close", lambda: _ret(252)),
    _ts(
        "mom_12_1",
        253,
        "12-1 momentum: simple return of close from 252 days ago to 21 days ago, close(t-21) / close(t-252) "
        "- 1 (the classic skip-month momentum: the last month, prone to short-term reversal, is left out)",
        lambda: _ret(252, skip=21),
    ),
    _ts(
        "ma_gap_200",
        200,
        "close / 200-day simple moving average of close - 1",
        lambda: _C / pl.col("_sma200") - 1,
        ("_sma200",),
    ),
    _xs(
        "vol_ratio_20_60",
        61,
        "vol_20 / vol_60: short- over long-window volatility (> 1 when volatility is rising); null if "
        "vol_60 is zero (a flat window)",
        lambda: _div(pl.col("vol_20"), pl.col("vol_60")),
        ("vol_20", "vol_60"),
        kind="time_series",
    ),
    _xs(
        "xs_rank_mom_60",
        61,
        "percentile rank of mom_60 among symbols with a value that date, "
        "(rank - 1) / (n - 1) in [0, 1], ties averaged; null if fewer than 2 symbols",
        lambda: _xs_rank("mom_60"),
        ("mom_60",),
    ),
    _xs(
        "xs_z_vol_20",
        21,
        "cross-sectional z-score of vol_20 that date (sample std, ddof=1); null if fewer than 2 symbols or "
        "zero dispersion",
        lambda: _xs_z("vol_20"),
        ("vol_20",),
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


def _small_uint(n: int) -> type[np.unsignedinteger]:
    """Narrowest unsigned dtype for values < n (16-bit keys get numpy's O(n) stable radix sort)."""
    return np.uint16 if n <= 1 << 16 else np.uint32


_INPUTS = ("open", "high", "low", "close", "volume")


@dataclass(frozen=True)
class Panel:
    """Bars validated and ordered once, to be shared by `compute_features` and `compute_labels`.

    `frame` holds the value columns in (symbol, date) order with `_sid` (lexicographic symbol code, sorted),
    `_di` (days since the first date), `_n` (the row's index among its symbol's rows) and `_rem` (rows of
    the symbol after it); `back` reorders rows to (date, symbol) order (None: already in it).
    """

    frame: pl.DataFrame
    symbols: pl.Series
    first_day: int
    back: np.ndarray | None
    columns: tuple[str, ...]

    def keys(self, sid: pl.Series | np.ndarray, di: pl.Series | np.ndarray) -> list[pl.Series]:
        """The `date` and `symbol` columns for the given codes (`_sid`, `_di` values)."""
        sid, di = (x.to_numpy() if isinstance(x, pl.Series) else x for x in (sid, di))
        date = pl.Series("date", di.astype(np.int32) + np.int32(self.first_day), pl.Int32).cast(pl.Date)
        return [date, self.symbols.gather(pl.Series(sid.astype(np.uint32))).alias("symbol")]

    def require(self, columns: Sequence[str]) -> None:
        missing = [c for c in columns if c not in self.columns]
        if missing:
            raise ValueError(f"panel lacks columns {missing} (prepare_panel(ohlcv, columns=...))")


def prepare_panel(ohlcv: pl.DataFrame, columns: Sequence[str] = _INPUTS) -> Panel:
    """Validate, cast and order the input by (symbol, date), once for several computations.

    Input already in (symbol, date) or (date, symbol) order takes a fast path; otherwise two stable radix
    argsorts on small integer codes (much faster than a String/Date sort). Only the numeric `columns` move;
    keys are rebuilt from the codes at the end. Raises ValueError for missing columns, null keys or duplicate
    (symbol, date) rows.
    """
    columns = tuple(dict.fromkeys(columns))
    missing = [c for c in ("symbol", "date", *columns) if c not in ohlcv.columns]
    if missing:
        raise ValueError(f"ohlcv frame lacks columns {missing}")
    symbol, date = ohlcv.get_column("symbol").cast(pl.String), ohlcv.get_column("date").cast(pl.Date)
    if symbol.null_count() or date.null_count():
        raise ValueError("ohlcv has null symbol or date")
    values = ohlcv.select(pl.col(c).cast(pl.Int64 if c == "volume" else pl.Float64) for c in columns)
    syms = symbol.unique().sort()
    if ohlcv.height == 0:
        empty = values.with_columns(
            pl.Series(_SID, [], pl.UInt32),
            *[pl.Series(c, [], pl.Int32) for c in (_DAY, "_n", "_rem")],
        )
        return Panel(empty, syms, 0, None, columns)
    code = symbol.cast(pl.Enum(syms)).to_physical().to_numpy().astype(_small_uint(len(syms)))
    day = date.cast(pl.Int32).to_numpy()
    first_day = int(day.min())
    day = (day - first_day).astype(_small_uint(int(day.max()) - first_day + 1))

    def strictly_ordered(major: np.ndarray, minor: np.ndarray) -> np.ndarray:
        d1, d2 = np.diff(major.astype(np.int32)), np.diff(minor.astype(np.int32))
        return (d1 > 0) | ((d1 == 0) & (d2 > 0))

    back: np.ndarray | None = None
    if strictly_ordered(code, day).all():  # already (symbol, date)
        if len(syms) > 1:
            back = np.argsort(day, kind="stable")
    elif strictly_ordered(day, code).all():  # already (date, symbol), the usual layout: one radix pass
        perm = np.argsort(code, kind="stable")
        code, day, values = code[perm], day[perm], values[perm]
        back = np.empty_like(perm)
        back[perm] = np.arange(perm.size, dtype=perm.dtype)  # inverse permutation: the input order
    else:
        perm = np.argsort(day, kind="stable")
        perm = perm[np.argsort(code[perm], kind="stable")]
        code, day, values = code[perm], day[perm], values[perm]
        bad = np.flatnonzero(~strictly_ordered(code, day))
        if bad.size:
            rows = [
                (syms[int(code[i])], _EPOCH + dt.timedelta(days=first_day + int(day[i]))) for i in bad[:5]
            ]
            raise ValueError(f"ohlcv has duplicate (symbol, date) rows, e.g. {rows}")
        back = np.argsort(day, kind="stable")
    # row index within the symbol and rows left after it, from the group boundaries of the sorted codes
    rows = np.arange(code.size, dtype=np.int32)
    starts = np.flatnonzero(np.concatenate([[True], code[1:] != code[:-1]]))
    sizes = np.diff(np.append(starts, code.size))
    first = np.repeat(starts.astype(np.int32), sizes)
    frame = values.with_columns(
        pl.Series(_SID, code.astype(np.uint32)).set_sorted(),
        pl.Series(_DAY, day.astype(np.int32)),
        pl.Series("_n", rows - first),
        pl.Series("_rem", first + np.repeat(sizes.astype(np.int32), sizes) - 1 - rows),
    )
    return Panel(frame, syms, first_day, back, columns)


def _as_panel(ohlcv: pl.DataFrame | Panel, columns: Sequence[str]) -> Panel:
    if isinstance(ohlcv, Panel):
        ohlcv.require(columns)
        return ohlcv
    return prepare_panel(ohlcv, columns)


def _needed(names: tuple[str, ...]) -> tuple[list[str], list[str], list[str]]:
    """(per-symbol-stage features, derived-stage features, intermediate columns) to compute."""
    xs = [n for n in names if _IMPL[n].needs]
    ts = [n for n in names if not _IMPL[n].needs]
    ts += [d for d in dict.fromkeys(d for n in xs for d in _IMPL[n].needs) if d not in ts]
    helpers: set[str] = set()
    todo = [h for n in ts for h in _IMPL[n].helpers]
    while todo:
        h = todo.pop()
        if h not in helpers:
            helpers.add(h)
            todo.extend(_HELPERS[h][2])
    return ts, xs, sorted(helpers, key=list(_HELPERS).index)


def _clean(name: str, nan: bool) -> pl.Expr:
    """Null (NaN with `nan`) during warm-up and wherever the value is not finite."""
    col = pl.col(name)
    warm = pl.col("_n") >= FEATURES[name].lookback - 1
    return pl.when(warm & col.is_finite()).then(col).otherwise(float("nan") if nan else None).alias(name)


def _stage(df: pl.DataFrame, names: Sequence[str], nan: bool = False) -> pl.DataFrame:
    """Compute the features `names` from the columns of `df`, then apply the warm-up and finite policy.

    With `nan`, a missing value is NaN instead of null (a feature is never NaN, so it is unambiguous): a
    column without a validity mask is gathered several times faster (see compute_features).
    """
    if not names:
        return df
    df = df.with_columns(*[_IMPL[n].expr().cast(pl.Float64).alias(n) for n in names])
    return df.with_columns(*[_clean(n, nan) for n in names])


def compute_features(ohlcv: pl.DataFrame | Panel, names: Sequence[str] = FEATURE_NAMES) -> pl.DataFrame:
    """Compute ``names`` for every input row: ``date, symbol, <features Float64>`` sorted by (date, symbol).

    ``ohlcv`` is an ohlcv frame or a `Panel` of one (`prepare_panel`, to share the preparation with
    `compute_labels`). See the module docstring for warm-up and null policy. Raises ValueError for unknown
    names, missing columns, null keys or duplicate (symbol, date) rows.
    """
    names = _resolve(names)
    panel = _as_panel(ohlcv, _INPUTS)
    ts, xs, helpers = _needed(names)
    # rows in (symbol, date) order: whole-frame helpers (row-wise, or the same-date universe return), then
    # every per-symbol window in one group_by over the sorted symbol code (groups come out in row order)
    df = panel.frame
    for stage in range(_WINDOWS):
        exprs = [_HELPERS[h][1]().alias(h) for h in helpers if _HELPERS[h][0] == stage]
        if exprs:
            df = df.with_columns(*exprs)
    windows = [h for h in helpers if _HELPERS[h][0] == _WINDOWS]
    if windows:
        agg = df.group_by(_SID, maintain_order=True).agg(*[_HELPERS[h][1]().alias(h) for h in windows])
        df = df.hstack(agg.explode(windows).select(windows))
    # the features, NaN for missing: columns without a validity mask gather several times faster
    df = _stage(df, ts, nan=True).select(_SID, _DAY, "_n", *ts)
    # to (date, symbol) order for the derived stage, where `.over(_DAY)` windows are slices
    if panel.back is not None:
        df = df[panel.back]
    df = df.with_columns(pl.col(ts).fill_nan(None))
    if xs:
        df = _stage(df.with_columns(pl.col(_DAY).set_sorted()), xs)
    return pl.DataFrame([*panel.keys(df.get_column(_SID), df.get_column(_DAY)), *df.select(names)])
