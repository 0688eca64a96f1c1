"""Evaluate a world over a date range, in date order, from warehouse frames (pure polars/numpy).

The semantics are `decide`'s (the pure single-day reference); this module is its ranged, fast equivalent,
and a ranged run gives exactly the rows of a day-by-day run (the previous day's states come from the
stored decisions):
1. everything that does not depend on the previous day's states is computed for all dates at once as
   (T, S) matrices (T sessions, S strategies): the metrics of the KPI table, the data lag, sample
   sufficiency, the outcome of every gate comparison that reads no state-dependent metric, the score;
2. a lean loop over the dates does the sequential part on (S,) arrays: the eligible set, the correlation
   matrix among the eligible strategies (the only entries the selection reads), the greedy top-K,
   hysteresis, stage transitions and overrides; a strategy entering paper or live gets its paper track
   (`paper_days`, `sharpe_paper` from sums in date order, and the gate comparisons reading them) computed
   for the dates ahead at once;
3. the rows of `world_decisions`, `rule_results`, `world_snapshots` and `stage_history` are built
   columnar afterwards with `decide`'s texts and details (floats formatted as `decide` formats them; the
   gate texts come from `decide`'s own gate evaluator, run once per distinct pattern of comparison
   outcomes). `Evaluation.plans` builds each day's `Plan` from those rows when it is accessed.
`tests/test_world_decide.py` checks the result against `decide` day by day on randomized scenarios.
"""

from __future__ import annotations

import base64
import bisect
import datetime as dt
import hashlib
import json
import math
import re
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import polars as pl

from quantlab import metrics
from quantlab.backtest.kpis import KPI_METRICS, KPI_WINDOWS
from quantlab.calendar import sessions, sessions_through
from quantlab.expressions import Expr, Gate
from quantlab.world.decide import (
    Override,
    Plan,
    RuleRow,
    Snapshot,
    State,
    _eval_gate,
    metric_inputs,
)
from quantlab.world.spec import FAMILIES, WorldSpec, days


class Evaluation(NamedTuple):
    decisions: pl.DataFrame
    rules: pl.DataFrame
    plans: Sequence[Plan]  # one per session, each built from the rows when accessed
    snapshots: pl.DataFrame
    stage_history: pl.DataFrame


_SNAPSHOT_SCHEMA = {"world": pl.String, "date": pl.Date, "input_hash": pl.String, "snapshot": pl.String}
_HISTORY_SCHEMA = {
    "world": pl.String,
    "date": pl.Date,
    "strategy": pl.String,
    "from_stage": pl.String,
    "to_stage": pl.String,
    "reason_code": pl.String,
}
_DECISION_SCHEMA = {
    "world": pl.String,
    "date": pl.Date,
    "strategy": pl.String,
    "policy_version": pl.String,
    "ruleset_hash": pl.String,
    "input_hash": pl.String,
    "stage": pl.String,
    "stage_since": pl.Date,
    "pass_streak": pl.Int64,
    "fail_streak": pl.Int64,
    "selected": pl.Boolean,
    "score": pl.Float64,
    "reason_code": pl.String,
    "evaluate_only": pl.Boolean,
}
_RULE_SCHEMA = {
    "world": pl.String,
    "date": pl.Date,
    "strategy": pl.String,
    "rule": pl.String,
    "family": pl.String,
    "stage": pl.String,
    "status": pl.String,
    "severity": pl.String,
    "owner": pl.String,
    "reason_code": pl.String,
    "reason": pl.String,
    "details": pl.String,
}

# stages by code, and the lifecycle tables indexed by stage code
STAGES = ("backtest", "paper", "live", "inactive")
_STAGE = {s: k for k, s in enumerate(STAGES)}
_LIVE, _INACTIVE = _STAGE["live"], _STAGE["inactive"]
_IS_ACTIVE = np.array([False, True, True, False])
_NAME_RANK = np.argsort(np.argsort(STAGES))  # decide lists the gate rows by stage name
_PROMOTABLE = np.array([True, True, False, True])
_PROMOTE_TO = np.array([1, 2, 0, 1])  # backtest -> paper, paper -> live, inactive -> paper
_DEMOTE_TO = np.array([0, 0, 3, 0])  # paper -> backtest, live -> inactive

# reason codes of the decisions
CODES = (
    "selected",
    "correlated",
    "side_quota_full",
    "not_in_topk",
    "insufficient_history",
    "stage_pending",
    "gate_failed",
    "missing_metric",
    "promoted_to_paper",
    "promoted_to_live",
    "demoted_to_backtest",
    "demoted_to_inactive",
    "evaluate_only",
    "override_force_active",
    "override_force_inactive",
    "override_freeze",
)
_SELECTED, _CORRELATED, _QUOTA_FULL, _NOT_IN_TOPK, _INSUFFICIENT, _PENDING, _GATE_FAILED, _MISSING = range(8)
_EVALUATE_ONLY = CODES.index("evaluate_only")
_MOVE_REASON = np.array(
    [
        CODES.index(f"demoted_to_{s}") if s in ("backtest", "inactive") else CODES.index(f"promoted_to_{s}")
        for s in STAGES
    ]
)
_OVERRIDE_REASON = {a: CODES.index(f"override_{a}") for a in ("force_active", "force_inactive", "freeze")}
_OVERRIDE_STAGE = {"force_active": _LIVE, "force_inactive": _INACTIVE}

# the categorical values of the rows, coded by their index here
_VOCAB = (
    *CODES,
    *STAGES,
    "*",
    "pass",
    "fail",
    "warn",
    "skip",
    "data_current",
    "stale_data",
    "sample_ok",
    "not_evaluated",
    "gates_passed",
    "uncorrelated",
    "has_live",
    "no_live_strategy",
    *FAMILIES,
    *[f"gates_{s}" for s in STAGES],
    "override",
    "world_selection",
)
_V = {v: k for k, v in reversed(list(enumerate(_VOCAB)))}
_VOCAB_SERIES = pl.Series(_VOCAB, dtype=pl.String)
_STAGE_V = np.array([_V[s] for s in STAGES], dtype=np.uint16)
_CODE_V = np.array([_V[c] for c in CODES], dtype=np.uint16)

#: metrics that depend on the previous day's states (the paper track): computed in the daily loop
DYNAMIC = frozenset({"paper_days", "sharpe_paper"})
# numpy's exp/log/power may round differently with the array layout: expressions using them are evaluated
# per day on (S,) arrays, as `decide` evaluates them; every other operation rounds exactly, so evaluating
# on (T, S) matrices gives the very same numbers
_INEXACT = re.compile(r"\b(?:exp|log)\(|\^")
_EPOCH = dt.date(1970, 1, 1).toordinal()
_NO_DAY = -(2**31)  # a stage_since of none in a snapshot
_SQRT_PPY = math.sqrt(metrics.PERIODS_PER_YEAR)
_any = np.logical_or.reduce  # `ndarray.any` without its Python wrapper (the daily loop counts calls)


# ----------------------------------------------------------------------------------------- public helpers
def metric_panel(world: WorldSpec, kpis: pl.DataFrame, members: list[str]) -> pl.DataFrame:
    """One row per (date, strategy) with every `<metric>_<window>` the world can name, plus psr/dsr."""
    frames = []
    for name in [*world.windows, "full"]:
        part = kpis.filter(pl.col("window") == world.kpi_window(name)).select(
            "date", "strategy", *[pl.col(m).cast(pl.Float64).alias(f"{m}_{name}") for m in KPI_METRICS]
        )
        frames.append(part)
    panel = frames[0]
    for part in frames[1:]:
        panel = panel.join(part, on=["date", "strategy"], how="full", coalesce=True)
    extra = kpis.filter(pl.col("window") == "full").select(
        "date", "strategy", pl.col("sample_days").cast(pl.Float64), "psr", "dsr"
    )
    return panel.join(extra, on=["date", "strategy"], how="left").filter(pl.col("strategy").is_in(members))


def data_lags(bar_dates: list[dt.date], days_: list[dt.date]) -> dict[dt.date, int]:
    """Sessions between each day and the newest bar on or before it (a large number when there is none)."""
    return dict(zip(days_, _lags(bar_dates, days_).tolist(), strict=True))


def _lags(bar_dates: list[dt.date], days_: list[dt.date]) -> np.ndarray:
    bars = np.unique(np.array([d.toordinal() for d in bar_dates], dtype=np.int64))
    ords = np.array([d.toordinal() for d in days_], dtype=np.int64)
    k = np.searchsorted(bars, ords, side="right")
    newest = bars[np.maximum(k - 1, 0)] if len(bars) else ords
    return np.where(k == 0, 10**6, _through(ords) - _through(newest)).astype(np.int64)


def _through(ordinals: np.ndarray) -> np.ndarray:
    """Calendar sessions on or before each date (dates as proleptic ordinals)."""
    days_ = (
        pl.Series(np.asarray(ordinals, dtype=np.int64) - _EPOCH, dtype=pl.Int64).cast(pl.Int32).cast(pl.Date)
    )
    return np.asarray(sessions_through(days_), dtype=np.int64)


# --------------------------------------------------------------------------------------------- snapshots
def _b64(values: np.ndarray, dtype: str = "<f8") -> str:
    return base64.b64encode(np.ascontiguousarray(values, dtype=dtype).tobytes()).decode("ascii")


def _unb64(text: str, dtype: str = "<f8") -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype=dtype).astype(
        np.float64 if dtype == "<f8" else np.int64
    )


def _dumps(doc: Any) -> str:
    """The canonical JSON of a snapshot document (sorted keys, no spaces): its sha256 is the input hash."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def _corr_doc(matrix: np.ndarray) -> dict:
    """The correlation entries of the strategies that have any (the others are all unknown)."""
    n = len(matrix)
    known = ~np.isnan(matrix)
    ids = [int(i) for i in np.flatnonzero(known.any(axis=0) | known.any(axis=1))] if n else []
    block = matrix[np.ix_(ids, ids)]
    triangle = bool(np.array_equal(block, block.T, equal_nan=True) and (np.diag(block) == 1.0).all())
    values = block[np.triu_indices(len(ids), 1)] if triangle else block.ravel()
    return {"f8": _b64(values), "ids": ids, "triangle": triangle}


def _corr_matrix(doc: dict, n: int) -> np.ndarray:
    ids, values = doc["ids"], _unb64(doc["f8"])
    e = len(ids)
    if doc["triangle"]:
        block = np.eye(e)
        iu = np.triu_indices(e, 1)
        block[iu] = values
        block[iu[1], iu[0]] = values
    else:
        block = values.reshape(e, e)
    out = np.full((n, n), np.nan)
    out[np.ix_(ids, ids)] = block
    return out


def snapshot_doc(snap: Snapshot) -> dict:
    """Everything `decide` reads for this date as plain JSON data (format 2).

    - `metrics`: the names `decide` reads (`metric_inputs`: gates, score, sample_days, paper_days), sorted,
      and `f8`: their (names, strategies) float64 matrix, row-major, little-endian bytes in base64 (NaN =
      missing; exact);
    - `correlation`: null when the snapshot has none, else `ids`: the strategies (indices) with any known
      correlation and `f8` their block — the upper triangle (i < j, row-major) when `triangle` (the block is
      symmetric with a unit diagonal), else the whole block; every other entry is unknown (NaN). The ranged
      evaluation computes the correlations among the day's eligible strategies: the only ones selection
      reads;
    - `previous`: the states before the date: `i4`, a (4, strategies) int32 matrix like `f8` — the stage
      (index in `stages`), stage_since (days since 1970-01-01; -2^31: none), pass streak, fail streak;
    - `overrides`: [action, actor, reason, override_id, until] by strategy id; `data_lag`, `date`, `sides`,
      `strategies`.
    The input hash is the sha256 of its canonical JSON (`_dumps`).
    """
    n = len(snap.strategies)
    names = sorted(metric_inputs(snap.world) & set(snap.metrics))
    block = np.array(
        [np.broadcast_to(np.asarray(snap.metrics[k], dtype=np.float64), (n,)) for k in names],
        dtype=np.float64,
    ).reshape(len(names), n)
    corr = None
    if snap.correlation is not None:
        corr = _corr_doc(np.asarray(snap.correlation, dtype=np.float64).reshape(n, n))
    return {
        "correlation": corr,
        "data_lag": int(snap.data_lag),
        "date": snap.date.isoformat(),
        "format": 2,
        "metrics": {"f8": _b64(block), "names": names},
        "overrides": {
            sid: [o.action, o.actor, o.reason, o.override_id, _iso(o.until)]
            for sid, o in sorted(snap.overrides.items())
        },
        "previous": {
            "i4": _b64(
                np.array(
                    [
                        [STAGES.index(s.stage) for s in snap.previous],
                        [
                            _NO_DAY if s.stage_since is None else s.stage_since.toordinal() - _EPOCH
                            for s in snap.previous
                        ],
                        [s.pass_streak for s in snap.previous],
                        [s.fail_streak for s in snap.previous],
                    ],
                    dtype="<i4",
                ).reshape(4, n),
                "<i4",
            ),
            "stages": list(STAGES),
        },
        "sides": list(snap.sides),
        "strategies": list(snap.strategies),
    }


def _iso(day: dt.date | None) -> str | None:
    return None if day is None else day.isoformat()


def _day(text: str | None) -> dt.date | None:
    return None if text is None else dt.date.fromisoformat(text)


def snapshot_from_doc(world: WorldSpec, doc: dict) -> Snapshot:
    """The snapshot a stored `world_snapshots` document describes; re-deciding it reproduces the stored plan
    and rows exactly, and `snapshot_doc` of it gives the document back (so its hash is the input hash).

    Reads format 2 (`snapshot_doc`) and the earlier format (no `format` key: every metric and the whole
    correlation matrix as JSON lists, NaN as null). Metrics `decide` does not read are not stored; the
    correlations a format-2 document does not hold are unknown (NaN)."""
    n = len(doc["strategies"])
    if doc.get("format") == 2:
        stages = doc["previous"]["stages"]
        previous = tuple(
            State(stages[st], None if since == _NO_DAY else dt.date.fromordinal(since + _EPOCH), ps, fs)
            for st, since, ps, fs in zip(
                *_unb64(doc["previous"]["i4"], "<i4").reshape(4, n).tolist(), strict=True
            )
        )
        names = doc["metrics"]["names"]
        block = _unb64(doc["metrics"]["f8"]).reshape(len(names), n)
        values = {k: block[i].copy() for i, k in enumerate(names)}
        corr = None if doc["correlation"] is None else _corr_matrix(doc["correlation"], n)
    else:

        def arr(v: list[float | None]) -> np.ndarray:
            return np.array([np.nan if x is None else x for x in v], dtype=np.float64)

        values = {k: arr(v) for k, v in doc["metrics"].items()}
        previous = tuple(State(st, _day(since), ps, fs) for st, since, ps, fs in doc["previous"])
        rows = doc["correlation"]
        corr = None if rows is None else np.vstack([arr(r) for r in rows]).reshape(len(rows), len(rows))
    return Snapshot(
        world=world,
        date=dt.date.fromisoformat(doc["date"]),
        strategies=tuple(doc["strategies"]),
        sides=tuple(doc["sides"]),
        metrics=values,
        data_lag=doc["data_lag"],
        correlation=corr,
        previous=previous,
        overrides={
            sid: Override(action, actor, reason, oid, _day(until))
            for sid, (action, actor, reason, oid, until) in doc["overrides"].items()
        },
    )


def overrides_by_day(
    overrides: pl.DataFrame | None, days_: list[dt.date]
) -> dict[dt.date, dict[str, Override]]:
    """The override in force per day and strategy: effective_from <= day <= until (open-ended if null);
    the latest created wins."""
    out: dict[dt.date, dict[str, Override]] = {d: {} for d in days_}
    if overrides is None or overrides.is_empty():
        return out
    for r in overrides.sort("created_at", "override_id").iter_rows(named=True):
        ov = Override(r["action"], r["actor"], r["reason"], r["override_id"], r["until"])
        for d in days_:
            if r["effective_from"] <= d and (r["until"] is None or d <= r["until"]):
                out[d][r["strategy"]] = ov
    return out


def previous_states(decisions: pl.DataFrame, members: list[str]) -> tuple[State, ...]:
    """States from the latest stored decision rows (one date); new strategies start in `backtest`."""
    by_id = {
        r["strategy"]: State(r["stage"], r["stage_since"], r["pass_streak"], r["fail_streak"])
        for r in decisions.iter_rows(named=True)
    }
    return tuple(by_id.get(m, State()) for m in members)


# ------------------------------------------------------------------------------------------------ inputs
def _metric_sources(world: WorldSpec) -> dict[str, tuple[str, str]]:
    """KPI-backed metric name -> (KPI window, KPI column), as `metric_panel` names them."""
    out = {f"{m}_{w}": (world.kpi_window(w), m) for w in [*world.windows, "full"] for m in KPI_METRICS}
    out.update(sample_days=("full", "sample_days"), psr=("full", "psr"), dsr=("full", "dsr"))
    return out


def _kpi_matrices(
    world: WorldSpec, kpis: pl.DataFrame, members: list[str], days_: list[dt.date], names: list[str]
) -> dict[str, np.ndarray]:
    """(T, S) float matrices of KPI-backed metrics (NaN where the KPI table has no value)."""
    n_t, n_s = len(days_), len(members)
    out = {name: np.full((n_t, n_s), np.nan) for name in names}
    sources = _metric_sources(world)
    want = {name: sources[name] for name in names if name in sources}
    if not want or kpis.is_empty() or "window" not in kpis.columns:
        return out
    windows = sorted({w for w, _ in want.values()})
    cols = sorted({c for _, c in want.values() if c in kpis.columns})
    base = (
        kpis.lazy()
        .filter(pl.col("window").is_in(windows) & pl.col("strategy").is_in(members))
        .select(
            pl.col("date").cast(pl.Int32).alias("_d"),
            pl.col("strategy").cast(pl.Enum(members)).to_physical().alias("_s"),
            pl.col("window").cast(pl.Enum(windows)).to_physical().alias("_w"),
            *[pl.col(c).cast(pl.Float64).fill_null(np.nan) for c in cols],
        )
        .collect()
    )
    # date -> index of the session (-1: not in the range)
    first = days_[0].toordinal() - _EPOCH
    where = np.full(days_[-1].toordinal() - days_[0].toordinal() + 1, -1, dtype=np.int64)
    where[np.array([d.toordinal() for d in days_]) - _EPOCH - first] = np.arange(n_t)
    d = base.get_column("_d").to_numpy().astype(np.int64) - first
    t = np.where((d >= 0) & (d < len(where)), where[np.clip(d, 0, len(where) - 1)], -1)
    s = base.get_column("_s").to_numpy()
    w = base.get_column("_w").to_numpy()
    for k, window in enumerate(windows):
        rows = np.flatnonzero((w == k) & (t >= 0))
        tk, sk = t[rows], s[rows]
        for name, (win, col) in want.items():
            if win == window and col in base.columns:
                out[name][tk, sk] = base.get_column(col).to_numpy()[rows]
    return out


def _returns(returns: pl.DataFrame, members: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(the members' return dates as proleptic ordinals, (R, S) net returns, NaN where absent): the
    `returns_matrix` of their rows."""
    rows = (
        returns.lazy()
        .filter(pl.col("strategy").is_in(members))
        .select(
            pl.col("date").cast(pl.Int32),
            pl.col("strategy").cast(pl.Enum(members)).to_physical(),
            pl.col("net").cast(pl.Float64).fill_null(np.nan),
        )
        .collect()
    )
    day = rows.get_column("date").to_numpy()
    dates = np.unique(day)
    out = np.full((len(dates), len(members)), np.nan)
    out[np.searchsorted(dates, day), rows.get_column("strategy").to_numpy()] = rows.get_column(
        "net"
    ).to_numpy()
    return dates.astype(np.int64) + _EPOCH, out


def _corr_block(x: np.ndarray) -> np.ndarray:
    """Pearson correlations of the rows of `x` (strategies x dates) over the dates where both are present,
    clipped to [-1, 1]; NaN with fewer than 3 such dates or for a strategy whose present returns are all
    equal (no dispersion). Exactly symmetric (x x' is a symmetric rank-k update). Call inside
    `np.errstate(all="ignore")`."""
    total = np.add.reduce(x, axis=1)
    if not math.isnan(np.add.reduce(total)):  # no return missing
        if x.shape[1] < 3:
            return np.full((len(x),) * 2, np.nan)
        xc = x - (total / x.shape[1])[:, None]
        c = xc @ xc.T
        d = np.sqrt(c.diagonal())
        r = c / np.multiply.outer(d, d)
        flat = np.maximum.reduce(x, axis=1) == np.minimum.reduce(x, axis=1)
        bad = flat if _any(flat) else None
    else:
        valid = ~np.isnan(x)
        m = valid.astype(np.float64)
        z = np.where(valid, x, 0.0)
        z = np.where(valid, x - (np.add.reduce(z, axis=1) / np.add.reduce(m, axis=1))[:, None], 0.0)
        n = m @ m.T
        sz = z @ m.T  # [i, j]: the sum of x_i over the dates where both are present
        vi = (z * z) @ m.T - sz * sz / n
        r = (z @ z.T - sz * sz.T / n) / np.sqrt(vi * vi.T)
        flat = np.fmax.reduce(x, axis=1) == np.fmin.reduce(x, axis=1)
        bad = (n < 3) | ~(vi > 0) | ~(vi.T > 0) | flat[:, None] | flat[None, :]
    np.minimum(r, 1.0, out=r)
    np.maximum(r, -1.0, out=r)
    if bad is not None:
        if bad.ndim == 1:
            bad = bad[:, None] | bad[None, :]
        r[bad] = np.nan
    return r


def _leaf_state(leaf: Expr, env: dict[str, np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    """Per element: 0 the comparison is false, 1 true, 2 it reads a missing metric (as `decide` sees it)."""
    simple = _comparison(leaf)
    if simple is not None:  # `metric <op> number`: the ufunc `Expr.evaluate` applies, without its set-up
        name, op, number = simple
        x = env[name]
        return np.where(np.isnan(x), 2, op(x, number)).astype(np.int8)
    missing = np.zeros(shape, dtype=bool)
    for name in leaf.names:
        missing |= np.isnan(env[name])
    value = np.broadcast_to(np.asarray(leaf.evaluate(env), dtype=bool), shape)
    return np.where(missing, 2, value).astype(np.int8)


_SIMPLE = re.compile(r"\(([A-Za-z_][A-Za-z0-9_]*) (<|<=|>|>=|==|!=) (?:\(-([^()]+)\)|([^()]+))\)")
_COMPARE = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal}
_COMPARE.update({"==": np.equal, "!=": np.not_equal})  # NaN makes the comparison missing anyway
_SIMPLE_CACHE: dict[str, tuple[str, Any, np.float64] | None] = {}


def _comparison(leaf: Expr) -> tuple[str, Any, np.float64] | None:
    """(name, ufunc, number) if the leaf compares a metric with a number (its canonical form says so)."""
    key = leaf.text
    if key not in _SIMPLE_CACHE:
        m = _SIMPLE.fullmatch(leaf.canonical())
        _SIMPLE_CACHE[key] = None
        if m is not None:
            name, op, negative, positive = m.groups()
            try:
                number = -np.float64(float(negative)) if negative is not None else np.float64(float(positive))
            except ValueError:
                number = None
            if number is not None and name in leaf.names:
                _SIMPLE_CACHE[key] = (name, _COMPARE[op], number)
    return _SIMPLE_CACHE[key]


def _static(expr: Expr) -> bool:
    return not (expr.names & DYNAMIC) and not _INEXACT.search(expr.canonical())


class _Outcomes:
    """The distinct gate outcomes seen: passed, missing metric used, and the row's reason when evaluated."""

    def __init__(self, policy: str) -> None:
        self.policy = policy
        self.passed: list[bool] = []
        self.missing: list[bool] = []
        self.reason: list[str] = []
        self._tables = (np.zeros(0, dtype=bool), np.zeros(0, dtype=bool))
        self._codes = np.zeros(0, dtype=np.int64)

    def tables(self) -> tuple[np.ndarray, np.ndarray]:
        """(passed, missing) by outcome id."""
        if len(self._tables[0]) != len(self.passed):
            self._tables = (np.array(self.passed, dtype=bool), np.array(self.missing, dtype=bool))
            self._codes = self._tables[0] + 2 * self._tables[1]
        return self._tables

    def codes(self) -> np.ndarray:
        """passed + 2 missing, by outcome id."""
        self.tables()
        return self._codes

    def add(self, gate: Gate, env: dict[str, np.ndarray]) -> int:
        """The id of the outcome of `gate` on a one-strategy env, by `decide`'s evaluator."""
        passed, missing, texts = _eval_gate(gate, env, self.policy, 1)
        reason = "all gates pass" if passed[0] else "failed: " + "; ".join(texts[0])
        if missing[0]:
            reason += f" (missing metric, on_missing_metric={self.policy})"
        self.passed.append(bool(passed[0]))
        self.missing.append(bool(missing[0]))
        self.reason.append(reason)
        return len(self.reason) - 1


class _StageGate:
    """One gate tree: the id of its outcome per (date, strategy).

    An outcome depends only on the state of each comparison (false, true, missing); the pattern, coded in
    base 3, gets an id, computed once per pattern by `decide`'s evaluator (`_Outcomes`). Comparisons that
    read no paper-track metric are evaluated for all dates at once. Those that read `paper_days` or
    `sharpe_paper` read a missing metric off a paper track (`ids`: every date, every strategy) and are
    evaluated per paper-track segment on one (`segment`). A gate with an exp/log/power comparison (or a
    huge tree) is evaluated per day instead (`day`), on (S,) arrays as `decide` does. Call inside
    `np.errstate(all="ignore")`."""

    def __init__(self, gate: Gate, outcomes: _Outcomes, env: dict[str, np.ndarray], shape: tuple[int, int]):
        self.gate = gate
        self.outcomes = outcomes
        leaves = gate.leaves()
        exact = [not _INEXACT.search(leaf.canonical()) for leaf in leaves]
        self.daily = len(leaves) > 39 or not all(exact)  # base-3 codes of up to 39 comparisons fit an int64
        self.track = [(k, leaf) for k, leaf in enumerate(leaves) if leaf.names & DYNAMIC]
        self.per_day = [(k, leaf) for k, leaf in enumerate(leaves) if not _static(leaf)]
        self.cache: dict[Any, int] = {}
        self.ids: np.ndarray | None = None
        self.lookup: np.ndarray | None = None
        self.code = np.zeros(shape, dtype=np.int64)
        self.states: dict[int, np.ndarray] = {}
        for k, leaf in enumerate(leaves):
            if _static(leaf):
                state = _leaf_state(leaf, env, shape)
                if self.daily:
                    self.states[k] = state
                else:
                    self.code += state.astype(np.int64) * 3**k
        if self.daily:
            return
        off_track = (self.code + sum(2 * 3**k for k, _ in self.track)).ravel()  # paper-track metrics missing
        n_s = shape[1]
        # outcome id by code, when the codes are few; a (date, strategy) with each code (any: the outcome
        # depends on the code only)
        self.lookup = np.full(3 ** len(leaves), -1, dtype=np.int32) if 3 ** len(leaves) <= 6561 else None
        if self.lookup is not None:
            where = np.full(len(self.lookup), -1, dtype=np.int64)
            where[off_track] = np.arange(len(off_track))
            keys = np.flatnonzero(where >= 0)
            first = where[keys]
        else:
            keys, first = np.unique(off_track, return_index=True)
        table = np.array(
            [outcomes.add(gate, {n: env[n][divmod(int(f), n_s)][None] for n in gate.names}) for f in first],
            dtype=np.int32,
        )
        self.cache.update(zip(keys.tolist(), table.tolist(), strict=True))
        if self.lookup is not None:
            self.lookup[keys] = table
            self.ids = self.lookup[off_track].reshape(shape)
        else:
            self.ids = table[np.searchsorted(keys, off_track)].reshape(shape)

    def _ids(self, keys: list[Any], env: dict[str, np.ndarray], at: list[int]) -> np.ndarray:
        out = np.empty(len(keys), dtype=np.int32)
        cache = self.cache
        for j, key in enumerate(keys):
            found = cache.get(key)
            if found is None:
                i = at[j]
                found = cache[key] = self.outcomes.add(
                    self.gate, {n: env[n][i : i + 1] for n in self.gate.names}
                )
            out[j] = found
        return out

    def segment(self, ta: int, tb: int, i: int, env: dict[str, np.ndarray]) -> np.ndarray:
        """Outcome ids of strategy i on its paper track on dates [ta, tb); `env`: its (tb - ta,) metrics."""
        assert self.ids is not None
        if not self.track:
            return self.ids[ta:tb, i]
        code = self.code[ta:tb, i].copy()
        for k, leaf in self.track:
            code += _leaf_state(leaf, env, (tb - ta,)) * 3**k
        if self.lookup is not None:
            ids = self.lookup[code]
            if ids.min() >= 0:
                return ids
        keys, first, inverse = np.unique(code, return_index=True, return_inverse=True)
        table = self._ids(keys.tolist(), env, first.tolist())
        if self.lookup is not None:
            self.lookup[keys] = table
        return table[inverse]

    def day(self, t: int, cols: np.ndarray, env: dict[str, np.ndarray]) -> np.ndarray:
        """Outcome ids on date t of the strategies `cols` (a per-day gate); `env`: that day's (S,) metrics."""
        n_s = self.code.shape[1]
        states = {k: s[t] for k, s in self.states.items()}
        states.update({k: _leaf_state(leaf, env, (n_s,)) for k, leaf in self.per_day})
        stack = np.stack([states[k] for k in sorted(states)], axis=1)[cols]
        return self._ids([bytes(r) for r in stack], env, cols.tolist())


class _Tracks:
    """The paper track of each strategy in paper or live: its present net returns dated after
    `stage_since`, up to the day. A track is computed by segment ahead of the daily loop, in chunks of dates
    (doubling), and cleared from the day it ends: `paper_days`, `sharpe_paper` (`metrics.sharpe_ratio`
    from the count, the sums of d = r - (first return) and d^2 added in date order — so a track resumed
    at a later start gives the very same numbers — and whether any return differs from the first), and
    for those dates its warm-up (`pending`) and, in the tables of its stage (`_RunInputs`), its gate outcome,
    eligibility and first not-eligible reason: a strategy in paper or live on a date is on its track then
    (those entries are read for no one else). Call inside `np.errstate(all="ignore")`."""

    def __init__(
        self,
        net: np.ndarray,
        upto: np.ndarray,
        thru: np.ndarray,
        run: _RunInputs,
        rec: _Days,  # net: (S, R)
    ) -> None:
        n_t, n_s = run.enough.shape
        self.net, self.upto, self.thru, self.run = net, upto, thru, run
        self.upto_l = upto.tolist()
        self.on = np.zeros(n_s, dtype=bool)
        self.any = False
        self.count = 0  # tracks running
        self.stage = np.zeros(n_s, dtype=np.int64)
        self.until = np.zeros(n_s, dtype=np.int64)  # dates computed: up to (excluded)
        self.size = np.zeros(n_s, dtype=np.int64)
        self.next = n_t  # the first date some running track is not computed for
        self.row = np.zeros(n_s, dtype=np.int64)  # the next return row to add
        self.since = np.zeros(n_s, dtype=np.int64)  # sessions up to stage_since
        self.first = np.full(n_s, np.nan)
        self.carry = np.zeros((4, n_s))  # count, sums of d and d^2, count of returns unlike the first
        self.pending = rec.pending

    def start(self, i: int, t: int, row: int, since: int, stage: int) -> None:
        """Strategy i runs a track from date t, of the returns from `row` on, in `stage`."""
        self.on[i] = self.any = True
        self.count += 1
        self.stage[i], self.row[i], self.since[i] = stage, row, since
        self.first[i] = np.nan
        self.carry[:, i] = 0.0
        self.until[i], self.size[i] = t, 128
        self.fill(i)
        self.next = min(self.next, int(self.until[i]))

    def stop(self, i: int, t: int) -> None:
        """Strategy i's track ends before date t."""
        run, until = self.run, int(self.until[i])
        run.paper_days[t:until, i] = np.nan
        run.sharpe_paper[t:until, i] = np.nan
        self.pending[t:until, i] = False
        self.on[i] = False
        self.count -= 1
        self.any = self.count > 0

    def extend(self, t: int) -> None:
        """Compute the running tracks that end before date t further (`next`: the first date one ends)."""
        for i in np.flatnonzero(self.on & (self.until <= t)).tolist():
            self.fill(i)
        self.next = int(self.until[self.on].min()) if self.any else len(self.upto)

    def fill(self, i: int) -> None:
        run = self.run
        ta = int(self.until[i])
        tb = min(len(self.upto), ta + int(self.size[i]))
        self.size[i] = 512
        if ta >= tb:
            return
        # the returns up to date tb - 1: count, sum of d, of d^2, of returns unlike the first, carried over
        r0 = int(self.row[i])
        r1 = max(r0, self.upto_l[tb - 1])  # (a stage_since after the dates: no returns yet)
        x = self.net[i, r0:r1]
        valid = x == x
        gaps = not np.logical_and.reduce(valid)
        first = self.first[i]
        if first != first and r1 > r0 and not (gaps and not valid.any()):
            first = self.first[i] = x[valid.argmax()]
        acc = np.empty((4, r1 - r0 + 1))
        acc[:, 0] = self.carry[:, i]
        acc[0, 1:] = valid
        d = acc[1, 1:]
        np.subtract(x, first, out=d)
        np.not_equal(x, first, out=acc[3, 1:])
        if gaps:
            d[~valid] = 0.0
            acc[3, 1:][~valid] = 0.0
        np.multiply(d, d, out=acc[2, 1:])
        np.cumsum(acc, axis=1, out=acc)  # in date order
        self.carry[:, i] = acc[:, -1]
        self.row[i] = r1
        n, s1, s2, varied = acc[:, np.maximum(self.upto[ta:tb] - r0, 0)]
        mean_d = s1 / n
        std = np.sqrt((s2 - s1 * mean_d) / (n - 1))  # NaN if the rounding makes it negative: no Sharpe
        ratio = (first + mean_d) / std
        ok = (n >= metrics.MIN_PERIODS) & (varied > 0) & (std > 0) & (std < np.inf) & (np.abs(ratio) < np.inf)
        run.sharpe_paper[ta:tb, i] = np.where(ok, ratio * _SQRT_PPY, np.nan)
        stage_days = run.paper_days[ta:tb, i]
        np.subtract(self.thru[ta:tb], self.since[i], out=stage_days)
        # the gate of the strategy's stage on those dates
        stage = int(self.stage[i])
        gate = run.stage_gate[stage]
        pending = self.pending[ta:tb, i]
        np.less(stage_days, run.min_days[stage], out=pending)
        self.until[i] = tb
        if gate.ids is None or not (gate.track or run.min_days[stage]):
            return  # a per-day gate (the loop decides), or the stage's tables already hold the outcome
        # a strategy in this stage on those dates is on this track: its entries in the stage's tables
        ids = gate.segment(ta, tb, i, {n: run.values[n][ta:tb, i] for n in gate.gate.names})
        run.gate_ids[stage, ta:tb, i] = ids
        outcome = run.outcomes.codes()[ids]  # passed + 2 missing
        enough = run.enough[ta:tb, i]
        run.ok[stage, ta:tb, i] = (outcome & 1).astype(bool) & enough & run.scored[ta:tb, i] & ~pending
        run.not_ok[stage, ta:tb, i] = np.where(
            pending & enough, _PENDING, np.where(enough, _GATE_CODE[outcome], _INSUFFICIENT)
        )


# the first reason of a strategy with enough history, neither eligible nor pending, by gate outcome (passed +
# 2 missing): gates failed on a missing metric or not, or gates passed and the score is missing
_GATE_CODE = np.array([_GATE_FAILED, _MISSING, _MISSING, _MISSING], dtype=np.int8)


def _first_reason(enough: np.ndarray, passed: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """The reason code of a strategy that is not eligible and not pending (`decide`'s order: history, then
    gates — failed on a missing metric or not — and gates passed: the score is missing)."""
    return np.where(~enough, _INSUFFICIENT, np.where(passed | missing, _MISSING, _GATE_FAILED)).astype(
        np.int8
    )


class _RunInputs:
    """What the daily loop reads, per (date, strategy)."""

    def __init__(self, world: WorldSpec, values: dict[str, np.ndarray], n_t: int, n_s: int) -> None:
        self.values = values
        self.paper_days, self.sharpe_paper = values["paper_days"], values["sharpe_paper"]
        self.min_days = np.array([world.min_days(s) for s in STAGES], dtype=np.int64)
        self.score = np.full((n_t, n_s), np.nan)
        self.score_static = _static(world.score_expr)
        if self.score_static:
            self.score[:] = np.asarray(world.score_expr.evaluate(values), dtype=np.float64)
        values["score"] = self.score
        self.rank = np.where(np.isfinite(self.score), self.score, -np.inf)  # a missing score ranks last
        self.enough = np.nan_to_num(values["sample_days"], nan=0.0) >= days(world.data_currency.min_history)
        self.fail_missing = world.on_missing_metric == "fail"  # a missing score: not eligible
        self.scored = (
            self.rank > -np.inf
            if self.fail_missing and self.score_static
            else np.ones((n_t, n_s), dtype=bool)
        )
        self.outcomes = _Outcomes(world.on_missing_metric)
        by_gate: dict[int, _StageGate] = {}
        for name in STAGES:
            g = world.gates[name]
            if id(g) not in by_gate:
                by_gate[id(g)] = _StageGate(g, self.outcomes, values, (n_t, n_s))
        self.stage_gate = [by_gate[id(world.gates[name])] for name in STAGES]
        self.daily = [(g, np.array([h is g for h in self.stage_gate])) for g in by_gate.values() if g.daily]
        # by stage, off a paper track: outcome id (-1: decided per day), eligible unless pending, and the
        # reason if neither eligible nor pending
        ids = np.stack(
            [np.full((n_t, n_s), -1, np.int32) if g.ids is None else g.ids for g in self.stage_gate]
        )
        passed, missing = (np.append(x, False) for x in self.outcomes.tables())
        self.gate_ids = ids
        self.ok = self.enough & passed[ids] & self.scored
        self.not_ok = _first_reason(self.enough, passed[ids], missing[ids])


# ---------------------------------------------------------------------------------------------- the loop
class _Days:
    """What the daily loop recorded; (T, S) unless said."""

    def __init__(self, n_t: int, n_s: int) -> None:
        # the states before date t (row T: after the last date): stage code, stage_since (proleptic ordinal,
        # -1 = none), pass streak, fail streak, and the sessions up to stage_since (very negative: none)
        self.state = np.zeros((n_t + 1, 5, n_s), dtype=np.int64)
        self.stage, self.since, self.pass_, self.fail = (self.state[:, k] for k in range(4))
        shape = (n_t, n_s)
        self.pending = np.zeros(shape, dtype=bool)
        self.gate = np.zeros(shape, dtype=np.int32)  # outcome id of the gate of the strategy's stage
        self.picked = np.zeros(shape, dtype=bool)  # selected by the top-K (before overrides)
        self.selected = np.zeros(shape, dtype=bool)
        self.code = np.zeros(shape, dtype=np.int8)  # the selection's reason code
        self.reason = np.zeros(shape, dtype=np.int8)  # the decision's reason code
        self.corr_doc = ["null"] * n_t  # the snapshot's correlation entry
        # correlation rows of a day: (t, candidates in selection order, [(index in it, other, correlation)])
        self.corr_rows: list[tuple[int, np.ndarray, list[tuple[int, int, float]]]] = []
        self.n_corr = np.zeros(n_t, dtype=np.int64)
        self.override_rows: list[tuple[int, int, Override]] = []
        self.outcomes = _Outcomes("fail")


class _Inputs(NamedTuple):
    """What every phase of `evaluate_world` reads: the policy, the members, the sessions, the (T, S) metric
    matrices by name and the data lag of each session."""

    world: WorldSpec
    members: list[str]
    sides: list[str]
    days: list[dt.date]
    values: dict[str, np.ndarray]
    lags: np.ndarray


def evaluate_world(
    world: WorldSpec,
    members: list[str],
    sides: list[str],
    kpis: pl.DataFrame,
    returns: pl.DataFrame,
    bar_dates: list[dt.date],
    previous: tuple[State, ...],
    start: dt.date,
    end: dt.date,
    overrides: pl.DataFrame | None = None,
) -> Evaluation:
    """`world_decisions`, `rule_results`, `world_snapshots` and `stage_history` rows, and the plans, for
    every session in [start, end].

    `kpis`: as-of KPI rows of the members for [start, end]; `returns`: their `strategy_returns` rows up to
    `end` (all history: the paper track may reach back far); `bar_dates`: dates with bars in the world's
    universe up to `end`; `previous`: states after the last decision before `start`; `overrides`: the
    world's rows of the `overrides` table.
    """
    days_ = sessions(start, end)
    n_t, n_s = len(days_), len(members)
    if not n_t:
        return Evaluation(
            pl.DataFrame(schema=_DECISION_SCHEMA),
            pl.DataFrame(schema=_RULE_SCHEMA),
            [],
            pl.DataFrame(schema=_SNAPSHOT_SCHEMA),
            pl.DataFrame(schema=_HISTORY_SCHEMA),
        )
    static_names = sorted(metric_inputs(world) - DYNAMIC - {"data_lag"})
    values = _kpi_matrices(world, kpis, members, days_, static_names)
    lags = _lags(bar_dates, days_)
    values["data_lag"] = np.repeat(lags.astype(np.float64)[:, None], n_s, axis=1)
    values["paper_days"] = np.full((n_t, n_s), np.nan)
    values["sharpe_paper"] = np.full((n_t, n_s), np.nan)
    ret_ords, net = _returns(returns, members)
    forced = overrides_by_day(overrides, days_)
    rec = _Days(n_t, n_s)
    with np.errstate(all="ignore"):
        inp = _Inputs(world, members, sides, days_, values, lags)
        _run(inp, ret_ords, net, forced, previous, rec)
        decisions, snapshots, history = _frames(inp, forced, rec)
        rules, offsets = _rules(inp, rec)
    stale = lags > days(world.data_currency.max_lag)
    return Evaluation(
        decisions, rules, _Plans(days_, rec, values["score"], stale, rules, offsets), snapshots, history
    )


def _run(
    inp: _Inputs,
    ret_ords: np.ndarray,
    net: np.ndarray,
    forced: dict[dt.date, dict[str, Override]],
    previous: tuple[State, ...],
    rec: _Days,
) -> None:
    """The sequential part, date by date: `decide`'s steps 2-8 on (S,) arrays, recorded in `rec`."""
    world, members, sides, days_, values, lags = inp
    n_t, n_s = len(days_), len(members)
    run = _RunInputs(world, values, n_t, n_s)
    rec.outcomes = outcomes = run.outcomes
    sel = world.selection
    hyst = sel.hysteresis
    min_dwell = days(hyst.min_dwell)
    corr_cfg = sel.correlation
    corr_len = None if corr_cfg is None else KPI_WINDOWS[world.kpi_window(corr_cfg.window)]
    topk = _TopK(world, sides)
    id_rank = np.argsort(np.argsort(np.array(members, dtype=object), kind="stable"), kind="stable")
    member_at = {m: i for i, m in enumerate(members)}
    ords = np.array([d.toordinal() for d in days_], dtype=np.int64)
    thru = _through(ords)
    upto = np.searchsorted(ret_ords, ords, side="right")  # return rows on or before each date
    stale = lags > days(world.data_currency.max_lag)
    score, rank, enough, scored = run.score, run.rank, run.enough, run.scored
    env_names = {n for g, _ in run.daily for n in g.gate.names}
    if not run.score_static:
        env_names |= world.score_expr.names

    # the states before the first date; the paper tracks running
    state = rec.state
    state[0, 0] = [_STAGE[s.stage] for s in previous]
    state[0, 1] = [-1 if s.stage_since is None else s.stage_since.toordinal() for s in previous]
    state[0, 2] = [s.pass_streak for s in previous]
    state[0, 3] = [s.fail_streak for s in previous]
    since = state[0, 1]
    state[0, 4] = np.where(since < 0, -(10**12), _through(np.where(since < 0, _EPOCH, since)))
    net_t = np.ascontiguousarray(net.T)  # a strategy's returns contiguous: tracks, correlation windows
    tracks = _Tracks(net_t, upto, thru, run, rec)
    for i in np.flatnonzero(_IS_ACTIVE[state[0, 0]] & (since >= 0)).tolist():
        row = int(np.searchsorted(ret_ords, since[i], side="right"))
        tracks.start(i, 0, row, int(state[0, 4, i]), int(state[0, 0, i]))
    tracks.extend(0)
    everyone = np.arange(n_s)
    # strategies by score (descending; ties: strategy id) per date
    ranked = None
    if run.score_static:  # members in id order: a stable sort keeps ties by id
        by_id = members == sorted(members)
        ranked = (
            np.argsort(-rank, axis=1, kind="stable")
            if by_id
            else np.lexsort((np.broadcast_to(id_rank, rank.shape), -rank), axis=1)
        )
    active = _IS_ACTIVE[state[0, 0]]
    promote_at, demote_at = _thresholds(state[0, 0], hyst.promote_after, hyst.demote_after)
    untracked = active & ~tracks.on  # active without a stage_since: always pending if the stage warms up
    any_untracked = bool(untracked.any())
    gate_ids, ok, not_ok = run.gate_ids.ravel(), run.ok.ravel(), run.not_ok.ravel()
    at_stage = state[0, 0] * (n_t * n_s) + everyone
    upto_l, thru_l, stale_l = upto.tolist(), thru.tolist(), stale.tolist()
    last = (b"", "")  # the candidates of the last correlation block, and their JSON

    for t, day in enumerate(days_):
        now = state[t]
        stage, since_thru = now[0], now[4]
        if t >= tracks.next:
            tracks.extend(t)

        # 2-4. warm-up, the gates of each strategy's stage, the score: eligibility, else the first reason
        at = at_stage + t * n_s  # flat index of (stage, date, strategy)
        gate_id = gate_ids.take(at, out=rec.gate[t])
        eligible = ok.take(at)
        code = not_ok.take(at, out=rec.code[t])
        pending = rec.pending[t]
        if any_untracked:
            pending |= untracked & (run.min_days[stage] > 0)
        if env_names:
            env = {n: values[n][t] for n in env_names}
            if not run.score_static:
                score[t] = np.asarray(world.score_expr.evaluate(env), dtype=np.float64)
                rank[t] = np.where(np.isfinite(score[t]), score[t], -np.inf)
                if run.fail_missing:
                    scored[t] = rank[t] > -np.inf
                eligible &= scored[t]
            for g, uses in run.daily:
                cols = np.flatnonzero(uses[stage])
                if len(cols):
                    ids = gate_id[cols] = g.day(t, cols, env)
                    passed, missing = outcomes.tables()
                    eligible[cols] = (enough[t] & scored[t])[cols] & passed[ids]
                    code[cols] = _first_reason(enough[t, cols], passed[ids], missing[ids])
        if any_untracked or run.daily:
            eligible &= ~pending
            code[pending & enough[t]] = _PENDING

        # 5. correlation and top-K, greedy in score order (ties: strategy id)
        cand = eligible.nonzero()[0]
        if corr_cfg is not None:
            rec.corr_doc[t] = _NO_CORR
        if len(cand):
            if run.score_static:
                order = ranked[t][eligible[ranked[t]]]
            else:
                order = cand[np.lexsort((id_rank[cand], -rank[t, cand]))]
            corr = None
            if corr_cfg is not None and len(cand) >= 2:
                hi = upto_l[t]
                block = _corr_block(net_t[cand, max(0, hi - (corr_len or hi)) : hi])
                upper, at_upper = _upper(len(cand))
                corr = np.where(upper, block, block.T)  # the upper triangle mirrored: what the snapshot holds
                key = cand.tobytes()
                if key != last[0]:
                    last = (key, ",".join(map(str, cand.tolist())))
                f8 = base64.b64encode(block.take(at_upper).tobytes()).decode()
                rec.corr_doc[t] = f'{{"f8":"{f8}","ids":[{last[1]}],"triangle":true}}'
            topk.run(rec, t, order, cand, corr, code)
        picked = rec.picked[t]
        np.equal(code, _SELECTED, out=picked)

        # 6-7. hysteresis and stage transitions (the decisions' reason codes are derived after the loop)
        nxt = state[t + 1]
        nxt[:] = now
        if not stale_l[t]:
            counted = ~pending
            p = (now[2] + 1) * picked  # the new streaks
            f = (now[3] + 1) * ~picked
            np.copyto(nxt[2], p, where=counted)
            np.copyto(nxt[3], f, where=counted)
            # a streak reaching its threshold moves the strategy if its stage allows and it dwelt long enough
            moved = (p >= promote_at) | (f >= demote_at)
            moved &= counted
            moved &= since_thru <= thru_l[t] - min_dwell
            if _any(moved):
                nxt[:, moved] = np.array([[0], [ords[t]], [0], [0], [thru_l[t]]])
                nxt[0, moved] = np.where(picked, _PROMOTE_TO[stage], _DEMOTE_TO[stage])[moved]

        # 8. overrides decide instead of 6-7
        for sid, ov in forced[day].items():
            i = member_at.get(sid)
            if i is None:
                continue
            rec.override_rows.append((t, i, ov))
            nxt[:, i] = now[:, i]
            target = _OVERRIDE_STAGE.get(ov.action)
            if target is not None and stage[i] != target:
                nxt[:, i] = (target, ords[t], 0, 0, thru_l[t])

        # a strategy entering paper or live starts a new track with the next row of returns
        changed = nxt[0] != stage
        if _any(changed):
            for i in np.flatnonzero(changed).tolist():
                new = int(nxt[0, i])
                if tracks.on[i]:
                    tracks.stop(i, t + 1)
                if _IS_ACTIVE[new]:
                    tracks.start(i, t + 1, upto_l[t], thru_l[t], new)
                # a transition sets stage_since: the strategy is on a track if active
                active[i], untracked[i] = _IS_ACTIVE[new], False
                promote_at[i] = hyst.promote_after if _PROMOTABLE[new] else _NEVER
                demote_at[i] = hyst.demote_after if _IS_ACTIVE[new] else _NEVER
                at_stage[i] = new * (n_t * n_s) + i
            any_untracked = any_untracked and bool(untracked.any())

    # the decisions' reason codes and selection: a transition's, `evaluate_only` on stale dates, else the
    # selection's; an override's above all (force_active selects, force_inactive deselects)
    moved = rec.stage[1:] != rec.stage[:-1]
    rec.reason[:] = np.where(
        moved, _MOVE_REASON[rec.stage[1:]], np.where(stale[:, None], _EVALUATE_ONLY, rec.code)
    )
    rec.selected[:] = rec.picked
    for t, i, ov in rec.override_rows:
        rec.reason[t, i] = _OVERRIDE_REASON[ov.action]
        if ov.action in _OVERRIDE_STAGE:
            rec.selected[t, i] = ov.action == "force_active"


_NEVER = np.iinfo(np.int64).max


def _thresholds(stage: np.ndarray, promote_after: int, demote_after: int) -> tuple[np.ndarray, np.ndarray]:
    """The pass and fail streaks that move each strategy from its stage (never: beyond any streak)."""
    return (
        np.where(_PROMOTABLE[stage], promote_after, _NEVER),
        np.where(_IS_ACTIVE[stage], demote_after, _NEVER),
    )


_NO_CORR = '{"f8":"","ids":[],"triangle":true}'
_UPPER: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _upper(e: int) -> tuple[np.ndarray, np.ndarray]:
    """The strict upper triangle of an (e, e) matrix: mask, and flat indices in row-major order."""
    if e not in _UPPER:
        mask = np.triu(np.ones((e, e), dtype=bool), 1)
        _UPPER[e] = (mask, np.flatnonzero(mask))
    return _UPPER[e]


class _TopK:
    """`decide` step 5: the candidates in score order, each checked for correlation with the strategies
    already selected, then for its side's quota, then for the top-K."""

    def __init__(self, world: WorldSpec, sides: list[str]) -> None:
        sel = world.selection
        self.total = sel.topk.total
        self.limit = None if sel.correlation is None else sel.correlation.max_pairwise
        names = sorted(set(sides))
        self.side_of = [names.index(s) for s in sides]
        quota = [sel.topk.by_side.get(s) for s in names]  # type: ignore[call-overload]
        self.quota_of = [-1 if quota[k] is None else quota[k] for k in self.side_of]
        self.n_sides = len(names)

    def run(
        self,
        rec: _Days,
        t: int,
        order: np.ndarray,
        cand: np.ndarray,
        corr: np.ndarray | None,
        code: np.ndarray,
    ) -> None:
        limit, quota_of, side_of, total = self.limit, self.quota_of, self.side_of, self.total
        # per candidate, the candidates correlated with it above the limit, as bits (position in cand)
        hot = None if corr is None else np.packbits(corr > limit, axis=1, bitorder="little")  # type: ignore[operator]
        blocked = 0  # the candidates correlated above the limit with a selected strategy
        chosen: list[int] = []  # positions in cand of the strategies selected, ascending (strategy order)
        side_count = [0] * self.n_sides
        conflicts: list[tuple[int, int, float]] = []
        seq = order.tolist()
        codes = [0] * len(seq)
        for k, (i, a) in enumerate(zip(seq, np.searchsorted(cand, order).tolist(), strict=True)):
            # a: i's position among the candidates
            if blocked >> a & 1:
                # the conflict `decide` reports: the highest correlation, the first in strategy order
                row = corr[a].tolist()  # type: ignore[index]
                worst, best = -1, 0.0
                for b in chosen:
                    v = row[b]
                    if v == v and (worst < 0 or v > best):
                        worst, best = b, v
                codes[k] = _CORRELATED
                conflicts.append((k, int(cand[worst]), best))
                continue
            q = quota_of[i]
            if q >= 0 and side_count[side_of[i]] >= q:
                codes[k] = _QUOTA_FULL
            elif len(chosen) >= total:
                codes[k] = _NOT_IN_TOPK
            else:
                side_count[side_of[i]] += 1
                codes[k] = _SELECTED
                bisect.insort(chosen, a)
                if hot is not None:
                    blocked |= int.from_bytes(hot[a].tobytes(), "little")
        code[order] = codes
        if limit is not None:
            rec.n_corr[t] = len(seq)
            rec.corr_rows.append((t, order, conflicts))


# -------------------------------------------------------------------------------------------------- rows
_SMALL = {k: json.dumps(k / 1e6) for k in range(-99, 100)}


def _json6(values: np.ndarray) -> pl.Series:
    """`json.dumps(round(float(x), 6))` of each x, `null` for NaN (`decide`'s detail values), vectorized.

    round(x, 6) is the double nearest to k / 10^6, k the correctly rounded x * 10^6: rint(x * 1e6) is k
    unless x * 10^6 lies within rounding error of a half (those are left to Python). polars prints the
    shortest repr as Python does from 1e-4 up; smaller values use exponent notation (a table)."""
    x = np.ascontiguousarray(values, dtype=np.float64).ravel()
    with np.errstate(all="ignore"):
        y = x * 1e6
        k = np.rint(y)
        tie = np.abs(np.abs(y - np.floor(y)) - 0.5) <= 4.5e-16 * np.abs(y)
        fast = np.isfinite(x) & (np.abs(x) < 1e6) & ~tie
        out = pl.Series(np.where(fast, k, 0.0) / 1e6, dtype=pl.Float64).cast(pl.String)
    small = np.flatnonzero(fast & (np.abs(k) < 100) & (k != 0))
    slow = np.flatnonzero(~fast & ~np.isnan(x))
    nan = np.flatnonzero(np.isnan(x))
    if len(small):
        out = out.scatter(small, [_SMALL[int(v)] for v in k[small]])
    if len(slow):
        out = out.scatter(slow, [json.dumps(round(float(v), 6)) for v in x[slow]])
    if len(nan):
        out = out.scatter(nan, "null")
    return out


def _dates(ordinals: np.ndarray) -> pl.Series:
    """Dates from proleptic ordinals (-1 = null)."""
    o = np.asarray(ordinals, dtype=np.int64)
    out = pl.Series(o - _EPOCH, dtype=pl.Int64).cast(pl.Int32).cast(pl.Date)
    if (o < 0).any():
        out = pl.select(pl.when(pl.Series(o < 0)).then(None).otherwise(out)).to_series()
    return out


def _str(n: int, value: str) -> pl.Series:
    return pl.Series([value], dtype=pl.String).new_from_index(0, n)


def _frames(
    inp: _Inputs,
    forced: dict[dt.date, dict[str, Override]],
    rec: _Days,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """`world_decisions`, `world_snapshots` and `stage_history`."""
    world, members, sides, days_, values, lags = inp
    n_t, n_s = len(days_), len(members)
    date_series = pl.Series("date", days_, dtype=pl.Date)
    ids = pl.Series("strategy", members, dtype=pl.String)
    stages = pl.Series(STAGES, dtype=pl.String)
    codes = pl.Series(CODES, dtype=pl.String)
    tt = np.repeat(np.arange(n_t), n_s)

    # snapshots: the document of `snapshot_doc`, written directly (its canonical JSON; tested)
    names = sorted(metric_inputs(world))
    block = np.ascontiguousarray(np.stack([values[n] for n in names], axis=1), dtype="<f8")
    prev = np.empty((n_t, 4, n_s), dtype="<i4")
    prev[:, 0], prev[:, 2], prev[:, 3] = rec.stage[:-1], rec.pass_[:-1], rec.fail[:-1]
    prev[:, 1] = np.where(rec.since[:-1] < 0, _NO_DAY, rec.since[:-1] - _EPOCH)
    head = ',"format":2,"metrics":{"f8":"'
    tail = f'","names":{_dumps(names)}}},"overrides":'
    fixed = f'"stages":{_dumps(list(STAGES))}}},"sides":{_dumps(list(sides))},"strategies":{_dumps(list(members))}}}'
    docs, hashes = [], []
    ov_docs: dict[tuple, str] = {(): "{}"}
    b64 = base64.b64encode
    lag_text = lags.tolist()
    iso = date_series.cast(pl.String).to_list()
    for t, day in enumerate(days_):
        ov = forced[day]
        key = tuple((sid, id(o)) for sid, o in ov.items()) if ov else ()
        if key not in ov_docs:
            ov_docs[key] = _dumps(
                {sid: [o.action, o.actor, o.reason, o.override_id, _iso(o.until)] for sid, o in ov.items()}
            )
        doc = (
            f'{{"correlation":{rec.corr_doc[t]},"data_lag":{lag_text[t]},"date":"{iso[t]}"{head}'
            f'{b64(block[t].tobytes()).decode()}{tail}{ov_docs[key]},"previous":{{"i4":"'
            f'{b64(prev[t].tobytes()).decode()}",{fixed}'
        )
        docs.append(doc)
        hashes.append(hashlib.sha256(doc.encode()).hexdigest()[:16])
    snapshots = pl.DataFrame(
        {"world": _str(n_t, world.id), "date": date_series, "input_hash": hashes, "snapshot": docs},
        schema=_SNAPSHOT_SCHEMA,
    )

    n = n_t * n_s
    decisions = pl.DataFrame(
        {
            "world": _str(n, world.id),
            "date": date_series.gather(tt),
            "strategy": ids.gather(np.tile(np.arange(n_s), n_t)),
            "policy_version": _str(n, world.policy_version),
            "ruleset_hash": _str(n, world.ruleset_hash),
            "input_hash": pl.Series(hashes, dtype=pl.String).gather(tt),
            "stage": stages.gather(rec.stage[1:].ravel()),
            "stage_since": _dates(rec.since[1:].ravel()),
            "pass_streak": rec.pass_[1:].ravel(),
            "fail_streak": rec.fail[1:].ravel(),
            "selected": rec.selected.ravel(),
            "score": pl.Series(values["score"].ravel(), dtype=pl.Float64).fill_nan(None),
            "reason_code": codes.gather(rec.reason.ravel()),
            "evaluate_only": np.repeat(lags > days(world.data_currency.max_lag), n_s),
        },
        schema=_DECISION_SCHEMA,
    )

    moved_t, moved_s = np.nonzero(rec.stage[1:] != rec.stage[:-1])
    history = pl.DataFrame(
        {
            "world": _str(len(moved_t), world.id),
            "date": date_series.gather(moved_t),
            "strategy": ids.gather(moved_s),
            "from_stage": stages.gather(rec.stage[:-1][moved_t, moved_s]),
            "to_stage": stages.gather(rec.stage[1:][moved_t, moved_s]),
            "reason_code": codes.gather(rec.reason[moved_t, moved_s]),
        },
        schema=_HISTORY_SCHEMA,
    )
    return decisions, snapshots, history


class _Rows:
    """Rule rows, added by kind with their positions in `decide`'s order: the categorical columns as
    vocabulary codes written in place, the texts collected and put in order at the end."""

    def __init__(self, n: int) -> None:
        self.codes = {c: np.zeros(n, dtype=np.uint16) for c in ("rule", "family", "stage", "status", "code")}
        self.t = np.zeros(n, dtype=np.int64)
        self.s = np.zeros(n, dtype=np.int64)
        self.pos: list[np.ndarray] = []
        self.texts: list[pl.DataFrame] = []

    def add(
        self,
        pos: np.ndarray,
        t: np.ndarray,
        s: Any,
        rule: Any,
        stage: Any,
        status: Any,
        code: Any,
        reason: pl.Series | str,
        details: pl.Series | str,
        family: str | None = None,
    ) -> None:
        """`rule`, `stage`, `status`, `code`: vocabulary values or arrays of their codes; `family`: the
        rule's unless given."""
        n = len(pos)
        self.t[pos], self.s[pos] = t, s
        for column, v in (
            ("rule", rule),
            ("family", family or rule),
            ("stage", stage),
            ("status", status),
            ("code", code),
        ):
            self.codes[column][pos] = _V[v] if isinstance(v, str) else v
        self.pos.append(np.asarray(pos, dtype=np.int64))
        self.texts.append(
            pl.DataFrame(
                {
                    "reason": _str(n, reason) if isinstance(reason, str) else reason,
                    "details": _str(n, details) if isinstance(details, str) else details,
                }
            )
        )

    def frame(self, world: WorldSpec, members: list[str], days_: list[dt.date]) -> pl.DataFrame:
        texts = pl.concat(self.texts, rechunk=True)
        order = np.empty(texts.height, dtype=np.int64)
        order[np.concatenate(self.pos)] = np.arange(texts.height)
        severity = pl.Series(
            [world.rule(v).severity if v in FAMILIES else "" for v in _VOCAB], dtype=pl.String
        )
        owner = pl.Series([world.rule(v).owner if v in FAMILIES else "" for v in _VOCAB], dtype=pl.String)
        vocab = _VOCAB_SERIES
        frame = pl.concat(
            [pl.DataFrame({**self.codes, "_t": self.t, "_s": self.s, "_o": order}), texts], how="horizontal"
        )
        return frame.select(
            world=pl.lit(world.id, dtype=pl.String),
            date=pl.lit(pl.Series(days_, dtype=pl.Date)).gather(pl.col("_t")),
            strategy=pl.lit(pl.Series([*members, "*"], dtype=pl.String)).gather(pl.col("_s")),
            rule=pl.lit(vocab).gather(pl.col("rule")),
            family=pl.lit(vocab).gather(pl.col("family")),
            stage=pl.lit(vocab).gather(pl.col("stage")),
            status=pl.lit(vocab).gather(pl.col("status")),
            severity=pl.lit(severity).gather(pl.col("family")),
            owner=pl.lit(owner).gather(pl.col("family")),
            reason_code=pl.lit(vocab).gather(pl.col("code")),
            reason=pl.col("reason").gather(pl.col("_o")),
            details=pl.col("details").gather(pl.col("_o")),
        )


def _rules(
    inp: _Inputs,
    rec: _Days,
) -> tuple[pl.DataFrame, np.ndarray]:
    """`rule_results` rows in `decide`'s order, and the first row of each day (T + 1 offsets)."""
    world, members, sides, days_, values, lags = inp
    n_t, n_s = len(days_), len(members)
    outcomes = rec.outcomes
    policy = world.on_missing_metric
    max_lag = days(world.data_currency.max_lag)
    min_hist = days(world.data_currency.min_history)
    min_days = np.array([world.min_days(s) for s in STAGES], dtype=np.int64)
    PASS, FAIL, WARN, SKIP = (_V[v] for v in ("pass", "fail", "warn", "skip"))

    # per day: data currency, S sample, S gates, correlation, S selection, overrides and S lifecycle, world
    has_ov = np.zeros((n_t, n_s), dtype=bool)
    for t, i, _ in rec.override_rows:
        has_ov[t, i] = True
    offsets = np.concatenate([[0], np.cumsum(2 + 4 * n_s + rec.n_corr + has_ov.sum(axis=1))])
    out = _Rows(int(offsets[-1]))
    off = offsets[:-1]
    tt = np.repeat(np.arange(n_t), n_s)
    ss = np.tile(np.arange(n_s), n_t)
    base = off[tt]
    prev_stage = rec.stage[:-1].ravel()
    stage_v = _STAGE_V[prev_stage]
    stage_names = pl.Series(STAGES, dtype=pl.String).gather(prev_stage)
    star = np.full(n_t, n_s)
    t_all = np.arange(n_t)

    # data currency; the world's selection
    stale = lags > max_lag
    lag = pl.Series(lags, dtype=pl.Int64).cast(pl.String)
    frame = pl.DataFrame({"lag": lag, "stale": stale})
    dc = frame.select(
        reason=pl.concat_str(
            pl.lit("newest bar is "),
            pl.col("lag"),
            pl.lit(f" sessions old (max {max_lag})"),
            pl.when(pl.col("stale"))
            .then(pl.lit("; evaluate-only: no promotions, allocation frozen"))
            .otherwise(pl.lit("")),
        ),
        details=pl.concat_str(pl.lit('{"data_lag": '), pl.col("lag"), pl.lit(f', "max_lag": {max_lag}}}')),
    )
    out.add(
        off,
        t_all,
        star,
        "data_currency",
        "*",
        np.where(stale, FAIL, PASS),
        np.where(stale, _V["stale_data"], _V["data_current"]),
        dc.get_column("reason"),
        dc.get_column("details"),
    )
    n_live = (rec.stage[1:] == _LIVE).sum(axis=1)
    live = pl.select(
        pl.when(pl.Series(n_live > 0))
        .then(pl.concat_str(pl.Series(n_live).cast(pl.String), pl.lit(" live strategies")))
        .otherwise(pl.lit("no live strategy: the world holds cash"))
    ).to_series()
    out.add(
        offsets[1:] - 1,
        t_all,
        star,
        "world_selection",
        "*",
        np.where(n_live > 0, PASS, WARN),
        np.where(n_live > 0, _V["has_live"], _V["no_live_strategy"]),
        live,
        "{}",
        family="selection",
    )

    # sample sufficiency
    enough = (np.nan_to_num(values["sample_days"], nan=0.0) >= min_hist).ravel()
    pending = rec.pending.ravel()
    kind = np.where(~enough, 0, np.where(pending, 1, 2))
    n = pl.Series(np.trunc(np.nan_to_num(values["sample_days"].ravel())).astype(np.int64)).cast(pl.String)
    for k, code in enumerate(("insufficient_history", "stage_pending", "sample_ok")):
        rows = np.flatnonzero(kind == k)
        if not len(rows):
            continue
        frame = pl.DataFrame({"n": n.gather(rows)})
        if k == 0:
            texts = frame.select(
                reason=pl.concat_str(pl.col("n"), pl.lit(f" sessions of returns < {min_hist}")),
                details=pl.concat_str(
                    pl.lit(f'{{"min_history": {min_hist}, "sample_days": '), pl.col("n"), pl.lit("}")
                ),
            )
        elif k == 1:
            frame = frame.with_columns(
                d=pl.Series(
                    np.trunc(np.nan_to_num(values["paper_days"].ravel()[rows])).astype(np.int64)
                ).cast(pl.String),
                need=pl.Series(min_days[prev_stage[rows]]).cast(pl.String),
                st=stage_names.gather(rows),
            )
            texts = frame.select(
                reason=pl.concat_str(
                    pl.col("d"),
                    pl.lit(" of "),
                    pl.col("need"),
                    pl.lit(" sessions in "),
                    pl.col("st"),
                    pl.lit(" before its gates apply"),
                ),
                details=pl.concat_str(
                    pl.lit('{"min_days": '),
                    pl.col("need"),
                    pl.lit(', "stage_days": '),
                    pl.col("d"),
                    pl.lit("}"),
                ),
            )
        else:
            texts = frame.select(
                reason=pl.concat_str(pl.col("n"), pl.lit(f" sessions of returns >= {min_hist}")),
                details=pl.concat_str(pl.lit('{"sample_days": '), pl.col("n"), pl.lit("}")),
            )
        out.add(
            base[rows] + 1 + ss[rows],
            tt[rows],
            ss[rows],
            "sample",
            stage_v[rows],
            FAIL if k == 0 else PASS,
            code,
            texts.get_column("reason"),
            texts.get_column("details"),
        )

    # gates: per day by stage name, then strategy
    rank = _NAME_RANK[rec.stage[:-1]]
    gate_pos = np.zeros((n_t, n_s), dtype=np.int64)
    before = np.zeros(n_t, dtype=np.int64)
    for r in range(4):
        here = rank == r
        gate_pos += np.where(here, before[:, None] + np.cumsum(here, axis=1) - 1, 0)
        before += here.sum(axis=1)
    gate_pos = gate_pos.ravel()
    gid = rec.gate.ravel()
    g_pass, g_miss = (np.asarray(a, dtype=bool) for a in (outcomes.passed, outcomes.missing))
    g_status = np.where(g_pass, PASS, FAIL)
    g_code = np.where(g_pass, _V["gates_passed"], _V["gate_failed"])
    if policy != "ignore":
        g_status = np.where(g_miss, FAIL if policy == "fail" else WARN, g_status)
        g_code = np.where(g_miss, _V["missing_metric"], g_code)
    g_reason = pl.Series(outcomes.reason, dtype=pl.String)
    evaluated = enough & ~pending
    for code in range(4):
        rows = np.flatnonzero(prev_stage == code)
        if not len(rows):
            continue
        stage = STAGES[code]
        parts: list[Any] = []
        for j, name in enumerate(sorted(world.gates[stage].names)):
            parts += [
                pl.lit(("" if j == 0 else ", ") + json.dumps(name) + ": "),
                _json6(values[name].ravel()[rows]),
            ]
        ev = evaluated[rows]
        ids = gid[rows]
        reason = pl.select(
            pl.when(pl.Series(ev))
            .then(g_reason.gather(ids))
            .otherwise(pl.lit("gates not evaluated (sample or stage warm-up)"))
        ).to_series()
        details = (
            pl.select(pl.concat_str(pl.lit('{"metrics": {'), *parts, pl.lit("}}"))).to_series()
            if parts
            else '{"metrics": {}}'
        )
        out.add(
            base[rows] + 1 + n_s + gate_pos[rows],
            tt[rows],
            ss[rows],
            f"gates_{stage}",
            stage,
            np.where(ev, g_status[ids], SKIP),
            np.where(ev, g_code[ids], _V["not_evaluated"]),
            reason,
            details,
            family="gates",
        )

    # correlation: in selection order, after the gates
    limit = None if world.selection.correlation is None else world.selection.correlation.max_pairwise
    if limit is not None and rec.corr_rows:
        lengths = np.array([len(o) for _, o, _ in rec.corr_rows], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        ct = np.repeat([t for t, _, _ in rec.corr_rows], lengths)
        ci = np.concatenate([o for _, o, _ in rec.corr_rows])
        cp = np.arange(len(ct)) - np.repeat(starts, lengths)
        fail = np.array(
            [starts[d] + k for d, (_, _, c) in enumerate(rec.corr_rows) for k, _, _ in c], dtype=np.int64
        )
        conflicts = [(o, v) for _, _, c in rec.corr_rows for _, o, v in c]
        reason = _str(len(ct), f"max correlation with selected strategies <= {limit}")
        details = _str(len(ct), "{}")
        if len(fail):
            reason = reason.scatter(
                fail, [f"correlation {v:.3f} with {members[o]} > {limit}" for o, v in conflicts]
            )
            quoted = [json.dumps(m) for m in members]
            details = details.scatter(
                fail,
                [f'{{"correlation": {round(v, 6)!r}, "with": {quoted[o]}}}' for o, v in conflicts],
            )
        failed = np.zeros(len(ct), dtype=bool)
        failed[fail] = True
        out.add(
            off[ct] + 1 + 2 * n_s + cp,
            ct,
            ci,
            "correlation",
            _STAGE_V[rec.stage[:-1][ct, ci]],
            np.where(failed, FAIL, PASS),
            np.where(failed, _V["correlated"], _V["uncorrelated"]),
            reason,
            details,
        )

    # selection and lifecycle (each lifecycle row after its strategy's override row if any): one polars
    # query, its columns built in parallel
    score = values["score"].ravel()
    known = np.isfinite(score)
    code = rec.code.ravel()
    new_stage = rec.stage[1:].ravel()
    pair = prev_stage * 4 + new_stage  # (from, to) as one code
    words = pl.Series([c.replace("_", " ") for c in CODES], dtype=pl.String)
    side_json = pl.Series([json.dumps(s) for s in sides], dtype=pl.String)
    heads = pl.Series([f"{a} -> {b} (pass streak " for a in STAGES for b in STAGES], dtype=pl.String)
    moves = pl.Series([f'{{"from": "{a}", "to": "{b}"}}' for a in STAGES for b in STAGES], dtype=pl.String)
    v = pl.col("v")
    texts = pl.DataFrame(
        {
            "v": _json6(np.where(known, score, np.nan)),
            "known": known,
            "code": code.astype(np.uint32),
            "s": ss.astype(np.uint32),
            "pair": pair.astype(np.uint32),
            "p": rec.pass_[1:].ravel(),
            "f": rec.fail[1:].ravel(),
        }
    ).select(
        sel_reason=pl.concat_str(
            pl.lit("score "),
            pl.when(pl.col("known")).then(v).otherwise(pl.lit("None")),
            pl.lit(": "),
            pl.lit(words).gather(pl.col("code")),
        ),
        sel_details=pl.concat_str(
            pl.lit('{"score": '), v, pl.lit(', "side": '), pl.lit(side_json).gather(pl.col("s")), pl.lit("}")
        ),
        life_reason=pl.concat_str(
            pl.lit(heads).gather(pl.col("pair")),
            pl.col("p"),
            pl.lit(", fail streak "),
            pl.col("f"),
            pl.lit(")"),
        ),
        life_details=pl.lit(moves).gather(pl.col("pair")),
    )
    picked = rec.picked.ravel()
    skip = (code == _INSUFFICIENT) | (code == _PENDING)
    out.add(
        base + 1 + 2 * n_s + rec.n_corr[tt] + ss,
        tt,
        ss,
        "selection",
        stage_v,
        np.where(picked, PASS, np.where(skip, SKIP, FAIL)),
        _CODE_V[code],
        texts.get_column("sel_reason"),
        texts.get_column("sel_details"),
    )
    life_pos = base + 1 + 3 * n_s + rec.n_corr[tt] + ss + np.cumsum(has_ov, axis=1).ravel()
    out.add(
        life_pos,
        tt,
        ss,
        "lifecycle",
        stage_v,
        np.where((prev_stage == _LIVE) & (new_stage != _LIVE), FAIL, PASS),
        _CODE_V[rec.reason.ravel()],
        texts.get_column("life_reason"),
        texts.get_column("life_details"),
    )
    if rec.override_rows:
        ot = np.array([t for t, _, _ in rec.override_rows], dtype=np.int64)
        oi = np.array([i for _, i, _ in rec.override_rows], dtype=np.int64)
        texts: dict[int, tuple[str, str]] = {}
        for _, _, o in rec.override_rows:
            if id(o) not in texts:
                until = "" if o.until is None else f" until {o.until}"
                texts[id(o)] = (
                    f"{o.action} by {o.actor}{until}: {o.reason}",
                    json.dumps(
                        {"override_id": o.override_id, "actor": o.actor, "action": o.action}, sort_keys=True
                    ),
                )
        out.add(
            life_pos[ot * n_s + oi] - 1,
            ot,
            oi,
            "override",
            _STAGE_V[rec.stage[:-1][ot, oi]],
            WARN,
            [_V[f"override_{o.action}"] for _, _, o in rec.override_rows],
            pl.Series([texts[id(o)][0] for _, _, o in rec.override_rows], dtype=pl.String),
            pl.Series([texts[id(o)][1] for _, _, o in rec.override_rows], dtype=pl.String),
            family="lifecycle",
        )
    return out.frame(world, members, days_), offsets


class _Plans(Sequence[Plan]):
    """The per-day `Plan`s of an evaluation, each built from its rows when accessed (equal to `decide`'s)."""

    def __init__(
        self,
        days_: list[dt.date],
        rec: _Days,
        score: np.ndarray,
        stale: np.ndarray,
        rules: pl.DataFrame,
        offsets: np.ndarray,
    ) -> None:
        self._days, self._rec, self._score, self._stale = days_, rec, score, stale
        self._rules, self._offsets = rules, offsets

    def __len__(self) -> int:
        return len(self._days)

    def __iter__(self) -> Iterator[Plan]:
        return (self._plan(t) for t in range(len(self)))

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, slice):
            return [self._plan(t) for t in range(*key.indices(len(self)))]
        return self._plan(range(len(self))[key])

    def _plan(self, t: int) -> Plan:
        rec, after = self._rec, t + 1
        states = tuple(
            State(STAGES[st], None if since < 0 else dt.date.fromordinal(since), p, f)
            for st, since, p, f in zip(
                rec.stage[after].tolist(),
                rec.since[after].tolist(),
                rec.pass_[after].tolist(),
                rec.fail[after].tolist(),
                strict=True,
            )
        )
        a, b = int(self._offsets[t]), int(self._offsets[t + 1])
        rows = self._rules.slice(a, b - a).select(
            "strategy", "rule", "family", "status", "stage", "reason_code", "reason", "details"
        )
        return Plan(
            self._days[t],
            states,
            tuple(bool(x) for x in rec.selected[t].tolist()),
            tuple(float(x) for x in self._score[t].tolist()),
            tuple(CODES[c] for c in rec.reason[t].tolist()),
            bool(self._stale[t]),
            tuple(RuleRow(*r[:7], json.loads(r[7])) for r in rows.iter_rows()),
        )
