"""`feature_profile.md`: a data-quality and redundancy profile of computed features (pure, no Dagster).

Input is a frame of ``date, symbol, <feature columns>`` (the ``features`` table or `compute_features`
output, any row order); a value is *missing* when it is null or NaN. For each feature the profile reports:

* **Summary**: kind and declared lookback (library features), missing rate, mean, std (ddof=1), and the 1st
  / 50th / 99th percentiles of the present values.
* **First valid date**: per symbol, the first date the feature has a value; summarized over symbols (symbols
  with a value, symbols never valid, earliest / median / latest first date) with the median warm-up in rows
  (the symbol's rows before its first value: ``lookback - 1`` for a library feature on a symbol's history
  from its first bar).
* **Drift** between the first and the second half of the dates (the sorted distinct dates cut in two equal
  counts): the *standardized mean shift* ``(mean_2 - mean_1) / std_1`` (std of the first half, ddof=1),
  and the *population stability index* over the deciles of the first half,
  ``PSI = sum_b (q_b - p_b) * ln(q_b / p_b)`` where ``p_b`` / ``q_b`` are the shares of the first / second
  half's values in bin ``b`` (bins cut at the first half's 10%..90% quantiles, equal cuts merged; shares
  floored at 1e-4). Conventional reading: < 0.1 stable, 0.1-0.25 moderate, > 0.25 shifted (flagged). Needs
  at least 10 values in each half, else "n/a".
* **Correlation clusters**: the absolute Spearman correlation of every pair of features, computed as the
  Pearson correlation of ranks (each feature ranked over its own present values, ties averaged) over the
  rows where both are present (at least 10). Features are linked when ``|rho| >= threshold`` (default 0.8);
  a cluster is a connected component of the links (single linkage: two members of a cluster may correlate
  less than the threshold through a chain; the report gives each cluster's range of pairwise ``|rho|``).

Missing rate, mean, std and first valid dates use every row. Percentiles, drift and correlations use at
most ``max_rows`` evenly spaced rows (every row when there are fewer; the report says how many), which
bounds their cost on long histories. Everything is vectorized (polars aggregations, numpy sorts and matrix
products, loops over features only); empty input and all-missing columns give "n/a" / "never" entries.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from quantlab.codes import run_starts
from quantlab.features.library import FEATURES
from quantlab.markdown import md_table

__all__ = ["FeatureProfile", "feature_profile", "profile_tables"]

_KEYS = ("date", "symbol")
_MIN_VALUES = 10  # fewest values a drift statistic or a correlation is computed from
_PSI_FLOOR = 1e-4
_PSI_SHIFT = 0.25


@dataclass(frozen=True)
class FeatureProfile:
    """The profile's tables (one row per feature, in the requested order) and correlation clusters."""

    rows: int
    symbols: int
    dates: tuple[dt.date, dt.date] | None
    split: dt.date | None  # first date of the second half
    sampled: int  # rows the percentiles, drift and correlations use
    summary: pl.DataFrame
    first_valid: pl.DataFrame
    drift: pl.DataFrame
    clusters: list[list[str]]  # groups of >= 2 features, largest first
    correlation: np.ndarray  # |rho| matrix (NaN: not computable), features in `summary` order
    threshold: float


def _as_float(name: str) -> pl.Expr:
    """The column as Float64 with NaN (missing, like null) turned into null."""
    x = pl.col(name).cast(pl.Float64)
    return pl.when(x.is_not_nan()).then(x).alias(name)


def _default_names(features: pl.DataFrame) -> list[str]:
    return [c for c, t in features.schema.items() if c not in _KEYS and t.is_numeric()]


def profile_tables(
    features: pl.DataFrame,
    names: Sequence[str] | None = None,
    *,
    threshold: float = 0.8,
    max_rows: int = 100_000,
) -> FeatureProfile:
    """Compute the profile of `names` (default: every numeric column but the keys); see the module doc."""
    if isinstance(names, str):
        raise TypeError("names must be a sequence of column names, not a string")
    names = list(dict.fromkeys(_default_names(features) if names is None else names))
    missing = [c for c in (*_KEYS, *names) if c not in features.columns]
    if missing:
        raise ValueError(f"features frame lacks columns {missing}")
    df = features.select(
        pl.col("date").cast(pl.Date),
        pl.col("symbol").cast(pl.String),
        *[_as_float(n) for n in names],
    )
    dates = df.get_column("date").unique().sort()
    split = dates[len(dates) // 2] if len(dates) >= 2 else None
    # evenly spaced rows (all of them up to max_rows) for the percentiles, the drift and the correlations
    sample = df.gather_every(max(1, -(-df.height // max(max_rows, 1))))
    values = sample.select(names).to_numpy() if names else np.empty((sample.height, 0))  # null: NaN
    late = (sample.get_column("date") >= split).to_numpy() if split else np.zeros(sample.height, bool)
    clusters, corr = _clusters(values, names, threshold)
    return FeatureProfile(
        rows=df.height,
        symbols=df.get_column("symbol").n_unique(),
        dates=(dates[0], dates[-1]) if len(dates) else None,
        split=split,
        sampled=sample.height,
        summary=_summary(df, names, values),
        first_valid=_first_valid(df, names),
        drift=_drift(values, names, late, split),
        clusters=clusters,
        correlation=corr,
        threshold=threshold,
    )


_FLOATS = ("missing", "mean", "std", "p01", "p50", "p99")


def _summary(df: pl.DataFrame, names: list[str], values: np.ndarray) -> pl.DataFrame:
    n = max(df.height, 1)
    exact = (
        df.select(
            *[(pl.col(c).null_count() / n).alias(f"missing:{c}") for c in names],
            *[pl.col(c).mean().alias(f"mean:{c}") for c in names],
            *[pl.col(c).std(ddof=1).alias(f"std:{c}") for c in names],
        ).row(0, named=True)
        if names
        else {}
    )
    cols: dict[str, list] = {k: [] for k in _FLOATS}
    for i, c in enumerate(names):
        x = values[:, i][~np.isnan(values[:, i])]
        q = np.percentile(x, [1.0, 50.0, 99.0]) if x.size else [None] * 3
        for k, v in zip(
            _FLOATS, [exact[f"missing:{c}"], exact[f"mean:{c}"], exact[f"std:{c}"], *q], strict=True
        ):
            cols[k].append(None if v is None else float(v))
    if not df.height:
        cols["missing"] = [None] * len(names)
    return pl.DataFrame(
        {
            "feature": names,
            "kind": [FEATURES[c].kind if c in FEATURES else None for c in names],
            "lookback": [FEATURES[c].lookback if c in FEATURES else None for c in names],
            **cols,
        },
        schema={"feature": pl.String, "kind": pl.String, "lookback": pl.Int64}
        | dict.fromkeys(_FLOATS, pl.Float64),
    )


def _first_valid(df: pl.DataFrame, names: list[str]) -> pl.DataFrame:
    """Per feature, over symbols: symbols with a value / never valid, earliest / median / latest first valid
    date, and the median count of the symbol's rows before its first value."""
    schema = {
        "feature": pl.String,
        "symbols_valid": pl.Int64,
        "never_valid": pl.Int64,
        "earliest": pl.Date,
        "median": pl.Date,
        "latest": pl.Date,
        "warmup_rows_median": pl.Float64,
    }
    rows: dict[str, list] = {k: [] for k in schema}
    if df.height:
        # rows in (symbol, date) order: two stable argsorts on small integer codes (radix sorts)
        symbol = df.get_column("symbol")
        syms = symbol.unique()
        code = symbol.cast(pl.Enum(syms)).to_physical().to_numpy().astype(_small_uint(len(syms)))
        day = df.get_column("date").cast(pl.Int32).to_numpy()
        day0 = int(day.min())
        day = day - day0
        perm = np.argsort(day.astype(_small_uint(int(day.max()) + 1)), kind="stable")
        perm = perm[np.argsort(code[perm], kind="stable")]
        code, day = code[perm], day[perm]
        starts = run_starts(code)
        ends = np.append(starts[1:], code.size)
    for c in names:
        rows["feature"].append(c)
        if not df.height:
            rows["symbols_valid"].append(0)
            rows["never_valid"].append(0)
            for k in ("earliest", "median", "latest", "warmup_rows_median"):
                rows[k].append(None)
            continue
        idx = np.flatnonzero(df.get_column(c).is_not_null().to_numpy()[perm])
        pos = np.searchsorted(idx, starts)  # each symbol's first valid row at or after its first row
        first = idx[np.minimum(pos, max(idx.size - 1, 0))] if idx.size else np.full(starts.size, -1)
        ok = (pos < idx.size) & (first < ends)
        days = day[first[ok]] + day0
        rows["symbols_valid"].append(int(ok.sum()))
        rows["never_valid"].append(int((~ok).sum()))
        if ok.any():
            rows["earliest"].append(_date(days.min()))
            rows["median"].append(_date(round(float(np.median(days)))))
            rows["latest"].append(_date(days.max()))
            rows["warmup_rows_median"].append(float(np.median(first[ok] - starts[ok])))
        else:
            for k in ("earliest", "median", "latest", "warmup_rows_median"):
                rows[k].append(None)
    return pl.DataFrame(rows, schema=schema)


def _small_uint(n: int) -> type[np.unsignedinteger]:
    """Narrowest unsigned dtype for values < n (16-bit keys get numpy's O(n) stable radix sort)."""
    return np.uint16 if n <= 1 << 16 else np.uint32


def _date(days: float) -> dt.date:
    return dt.date(1970, 1, 1) + dt.timedelta(days=int(days))


def _psi(first: np.ndarray, second: np.ndarray) -> float | None:
    if first.size < _MIN_VALUES or second.size < _MIN_VALUES:
        return None
    edges = np.unique(np.quantile(first, np.linspace(0.1, 0.9, 9)))
    p = np.bincount(np.searchsorted(edges, first, side="right"), minlength=edges.size + 1) / first.size
    q = np.bincount(np.searchsorted(edges, second, side="right"), minlength=edges.size + 1) / second.size
    p, q = np.maximum(p, _PSI_FLOOR), np.maximum(q, _PSI_FLOOR)
    return float(np.sum((q - p) * np.log(q / p)))


def _drift(values: np.ndarray, names: list[str], late: np.ndarray, split: dt.date | None) -> pl.DataFrame:
    schema = {
        "feature": pl.String,
        "mean_first": pl.Float64,
        "mean_second": pl.Float64,
        "std_mean_shift": pl.Float64,
        "psi": pl.Float64,
        "shifted": pl.Boolean,
    }
    rows: dict[str, list] = {k: [] for k in schema}
    for i, c in enumerate(names):
        x = values[:, i]
        ok = ~np.isnan(x)
        a, b = x[ok & ~late], x[ok & late]
        enough = split is not None and min(a.size, b.size) >= _MIN_VALUES
        m1 = float(a.mean()) if enough else None
        m2 = float(b.mean()) if enough else None
        s1 = float(a.std(ddof=1)) if enough else None
        psi = _psi(a, b) if enough else None
        rows["feature"].append(c)
        rows["mean_first"].append(m1)
        rows["mean_second"].append(m2)
        rows["std_mean_shift"].append((m2 - m1) / s1 if enough and s1 > 0 else None)
        rows["psi"].append(psi)
        rows["shifted"].append(None if psi is None else psi > _PSI_SHIFT)
    return pl.DataFrame(rows, schema=schema)


def _ranks(x: np.ndarray, out: np.ndarray) -> None:
    """Average ranks (1-based, ties averaged) of the non-NaN values of `x` scaled to (-0.5, 0.5) into `out`,
    which is NaN where `x` is."""
    out[:] = np.nan
    ok = np.flatnonzero(~np.isnan(x))
    if not ok.size:
        return
    order = np.argsort(x[ok])  # ties get their average rank whatever their order
    v = x[ok][order]
    new = np.concatenate([[True], v[1:] != v[:-1]])
    group = np.cumsum(new) - 1
    first = np.flatnonzero(new)
    last = np.append(first[1:], v.size) - 1
    avg = (first + last) / 2.0 + 1.0  # average 1-based rank of each run of ties
    out[ok[order]] = avg[group] / (v.size + 1) - 0.5


def _clusters(values: np.ndarray, names: list[str], threshold: float) -> tuple[list[list[str]], np.ndarray]:
    """|Spearman| matrix (pairwise complete) and the connected components of the links >= threshold."""
    k = len(names)
    corr = np.full((k, k), np.nan)
    if k and values.shape[0]:
        x = np.empty(values.shape, order="F")
        for i in range(k):
            _ranks(values[:, i], x[:, i])
        m = (~np.isnan(x)).astype(np.float64)
        x = np.nan_to_num(x)
        # pairwise-complete Pearson of the ranks from sums over the rows where both are present:
        # sx[i, j] is the sum of x_i over the rows where x_j is present (x_i is 0 where it is missing)
        n = m.T @ m
        sx, sxx, sxy = x.T @ m, (x * x).T @ m, x.T @ x
        with np.errstate(invalid="ignore", divide="ignore"):
            cov = sxy - sx * sx.T / n
            var = sxx - sx**2 / n
            r = cov / np.sqrt(var * var.T)
        r[(n < _MIN_VALUES) | ~np.isfinite(r)] = np.nan
        corr = np.clip(np.abs(r), 0.0, 1.0)
    # connected components of the links |rho| >= threshold (union-find over the upper triangle)
    parent = list(range(k))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in zip(*np.nonzero(np.triu(np.nan_to_num(corr) >= threshold, 1)), strict=True):
        parent[root(int(i))] = root(int(j))
    groups: dict[int, list[str]] = {}
    for i, name in enumerate(names):
        groups.setdefault(root(i), []).append(name)
    clusters = sorted((g for g in groups.values() if len(g) > 1), key=lambda g: (-len(g), names.index(g[0])))
    return clusters, corr


def _table(df: pl.DataFrame) -> str:
    """md_table of every row: missing dates shown as "never", floats rounded, no negative zeros."""
    x = pl.col(pl.Float64).round(4)
    shown = df.with_columns(
        pl.col(pl.Date).cast(pl.String).fill_null("never"),
        pl.when(x == 0.0).then(0.0).otherwise(x).name.keep(),
    )
    return md_table(shown, max_rows=max(df.height, 1))


def feature_profile(
    features: pl.DataFrame,
    names: Sequence[str] | None = None,
    *,
    threshold: float = 0.8,
    max_rows: int = 100_000,
    title: str = "Feature profile",
) -> str:
    """The markdown profile of `names` in `features` (see the module docstring for every statistic)."""
    p = profile_tables(features, names, threshold=threshold, max_rows=max_rows)
    k = p.summary.height
    span = f"{p.dates[0]} to {p.dates[1]}" if p.dates else "no dates"
    lines = [f"# {title}", "", f"{p.rows} rows, {p.symbols} symbols, {k} features, {span}.", ""]
    if p.rows == 0 or k == 0:
        return "\n".join([*lines, "_No rows to profile._" if p.rows == 0 else "_No features._", ""])
    sampled = "every row" if p.sampled == p.rows else f"{p.sampled} evenly spaced rows of {p.rows}"
    lines += [
        "## Summary",
        "",
        "Missing = null or NaN share of the rows; mean and std (ddof=1) of the present values; percentiles "
        f"p01 / p50 / p99 on {sampled}.",
        "",
        _table(p.summary),
        "",
        "## First valid date per symbol",
        "",
        "Over symbols: the first date each symbol has a value (never: symbols without any); warm-up = the "
        "symbol's rows before it (a library feature from the symbol's first bar: lookback - 1).",
        "",
        _table(p.first_valid),
        "",
        "## Drift: first vs second half of the dates",
        "",
    ]
    if p.split is None:
        lines += ["_n/a: fewer than two dates._", ""]
    else:
        lines += [
            f"First half: dates before {p.split}; second half: from {p.split} on ({sampled}). "
            "std_mean_shift = (mean_second - mean_first) / std_first; psi = population stability index "
            f"over the first half's deciles, shifted when > {_PSI_SHIFT} (< 0.1 stable). "
            f"n/a: fewer than {_MIN_VALUES} values in a half.",
            "",
            _table(p.drift),
            "",
        ]
    lines += [
        f"## Correlation clusters (|Spearman| >= {p.threshold})",
        "",
        "Connected components of the feature pairs whose absolute rank correlation (pairwise complete rows, "
        f"{sampled}) reaches the threshold, with the range of |rho| over each cluster's pairs.",
        "",
    ]
    index = {n: i for i, n in enumerate(p.summary.get_column("feature"))}
    for i, group in enumerate(p.clusters, 1):
        idx = [index[n] for n in group]
        pairs = p.correlation[np.ix_(idx, idx)][np.triu_indices(len(idx), 1)]
        pairs = pairs[~np.isnan(pairs)]
        lines.append(f"{i}. {', '.join(group)} (|rho| {pairs.min():.2f} to {pairs.max():.2f})")
    lines += [""] if p.clusters else ["_No pair reaches the threshold._", ""]
    clustered = {n for g in p.clusters for n in g}
    alone = [n for n in index if n not in clustered]
    if alone:
        lines += [f"Not clustered: {', '.join(alone)}.", ""]
    return "\n".join(lines)
