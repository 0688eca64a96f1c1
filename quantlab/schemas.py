"""Warehouse table contracts: one pandera (polars) schema per DuckDB table.

Every write is validated against its schema first (see `quantlab.resources.warehouse`); a violation fails
the step and nothing is written. `TABLES` also says which column partitions the table (the as-of date a
partition owns) and which columns scope a write (e.g. one world's rows).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandera.polars as pa
import polars as pl

from quantlab.curator.anomaly import FEATURES as ANOMALY_FEATURES
from quantlab.curator.contract import OHLCV_SCHEMA
from quantlab.features.library import FEATURE_NAMES

#: Daily bars (layout: `quantlab.curator.contract`). Keys are never null; values may be, and the quality
#: gate, not the write, reports bad values, so a bad bar is stored and shown, not silently dropped.
Ohlcv = pa.DataFrameSchema(
    {name: pa.Column(dtype, nullable=name not in ("symbol", "date")) for name, dtype in OHLCV_SCHEMA.items()},
    strict=True,
    name="ohlcv",
)


class QualityIssues(pa.DataFrameModel):
    """One row per failed quality rule: the partition date it was found for, the bar it concerns."""

    date: dt.date
    rule: str
    severity: str = pa.Field(isin=["blocking", "warn"])
    symbol: str = pa.Field(nullable=True)
    bar_date: dt.date = pa.Field(nullable=True)
    detail: str

    class Config:
        strict = True


class Symbols(pa.DataFrameModel):
    """The symbol registry (not partitioned: rewritten whole by each `ohlcv` run).

    name and sector come from the source; first/last_date from the stored bars; `active` says whether the
    source still lists the symbol (only active symbols are expected on every session by the quality gate).
    """

    symbol: str = pa.Field(unique=True)
    name: str
    sector: str
    active: bool
    first_date: dt.date
    last_date: dt.date
    bars: pl.Int64 = pa.Field(ge=1)

    class Config:
        strict = True


def _anomaly_schema() -> pa.DataFrameSchema:
    """One row per bar: its anomaly score (null without a model or a full feature row) and features."""
    cols = {
        "date": pa.Column(pl.Date, nullable=False),
        "symbol": pa.Column(pl.String, nullable=False),
        "score": pa.Column(pl.Float64, nullable=True, checks=pa.Check.in_range(0.0, 1.0)),
    }
    cols.update({name: pa.Column(pl.Float64, nullable=True) for name in ANOMALY_FEATURES})
    cols["model_date"] = pa.Column(pl.Date, nullable=True)
    return pa.DataFrameSchema(cols, strict=True, unique=["date", "symbol"], name="anomaly_scores")


def _features_schema() -> pa.DataFrameSchema:
    cols = {
        "date": pa.Column(pl.Date, nullable=False),
        "symbol": pa.Column(pl.String, nullable=False),
        "feature_set": pa.Column(pl.String, nullable=False),
    }
    cols.update({name: pa.Column(pl.Float64, nullable=True) for name in FEATURE_NAMES})
    return pa.DataFrameSchema(cols, strict=True, unique=["date", "symbol"], name="features")


class Labels(pa.DataFrameModel):
    """Forward labels in long format; `asof_date` is the session the label becomes known (partition key)."""

    date: dt.date
    symbol: str
    label: str
    horizon: pl.Int32 = pa.Field(ge=1)
    asof_date: dt.date
    value: float = pa.Field(nullable=False)

    class Config:
        strict = True
        unique = ["date", "symbol", "label"]


class Targets(pa.DataFrameModel):
    """Target weights decided at the close of `date` (executed at a later bar by the backtester)."""

    date: dt.date
    strategy: str
    symbol: str
    score: float = pa.Field(nullable=True)
    weight: float
    side: str = pa.Field(isin=["long", "short", "flat"])

    class Config:
        strict = True
        unique = ["date", "strategy", "symbol"]


class Models(pa.DataFrameModel):
    """One row per walk-forward model of a model strategy, partitioned by its fit date `date`.

    `model_id` hashes everything that determines the model (quantlab.strategy_lab.model.model_id); `params`
    are the estimator parameters it was fitted with (JSON: quantlab's defaults, the strategy's params and
    `random_state` = seed); `train_start`/`train_end` are the first/last training dates actually used.
    `in_sample_ic` is the mean daily cross-sectional Spearman IC of the model's own predictions on its
    training rows (every horizon-th session: non-overlapping labels); `oos_ic` is that of the PREVIOUS model
    (`oos_model_id`) over its prediction window, on the `oos_dates` decision dates whose labels are known at
    this fit date (null without a previous model or such dates).
    """

    model_id: str
    strategy: str
    strategy_version: pl.Int64 = pa.Field(ge=1)
    date: dt.date
    estimator: str
    params: str
    feature_set: str
    feature_set_version: str
    features: str
    label: str
    horizon: pl.Int64 = pa.Field(ge=1)
    train_window: pl.Int64 = pa.Field(ge=1)
    refit_every: pl.Int64 = pa.Field(ge=1)
    embargo: pl.Int64 = pa.Field(ge=0)
    seed: pl.Int64 = pa.Field(ge=0)
    train_start: dt.date
    train_end: dt.date
    n_train: pl.Int64 = pa.Field(ge=1)
    in_sample_ic: float = pa.Field(nullable=True)
    oos_ic: float = pa.Field(nullable=True)
    oos_dates: pl.Int64 = pa.Field(ge=0)
    oos_model_id: str = pa.Field(nullable=True)

    class Config:
        strict = True
        unique = ["date", "strategy"]


class StrategyReturns(pa.DataFrameModel):
    """Daily simple returns of each strategy's backtest and its exposures at the close."""

    date: dt.date
    strategy: str
    gross: float
    cost: float = pa.Field(ge=0)
    net: float
    long_ret: float
    short_ret: float
    cash_ret: float
    turnover: float = pa.Field(ge=0)
    gross_exposure: float = pa.Field(ge=0)
    net_exposure: float
    capped_trades: pl.Int64 = pa.Field(ge=0)

    class Config:
        strict = True
        unique = ["date", "strategy"]


class Trades(pa.DataFrameModel):
    date: dt.date
    strategy: str
    symbol: str
    side: str = pa.Field(isin=["buy", "sell"])
    weight_change: float
    price: float = pa.Field(gt=0)
    cost: float = pa.Field(ge=0)
    capped: bool

    class Config:
        strict = True
        unique = ["date", "strategy", "symbol"]


class Kpis(pa.DataFrameModel):
    """As-of KPIs of each strategy on each date over named windows (conventions: quantlab.metrics)."""

    date: dt.date
    strategy: str
    window: str
    sample_days: pl.Int64 = pa.Field(ge=0)
    sharpe: float = pa.Field(nullable=True)
    sortino: float = pa.Field(nullable=True)
    annual_return: float = pa.Field(nullable=True)
    annual_volatility: float = pa.Field(nullable=True)
    max_dd: float = pa.Field(nullable=True)
    calmar: float = pa.Field(nullable=True)
    hit_rate: float = pa.Field(nullable=True)
    turnover: float = pa.Field(nullable=True)
    ulcer: float = pa.Field(nullable=True)
    trades: float = pa.Field(ge=0, nullable=True)  # trades in the window
    # the long and short legs (each side's gross contribution; null while a side holds nothing)
    long_sharpe: float = pa.Field(nullable=True)
    long_annual_return: float = pa.Field(nullable=True)
    long_annual_volatility: float = pa.Field(nullable=True)
    long_max_dd: float = pa.Field(nullable=True)
    long_hit_rate: float = pa.Field(nullable=True)
    short_sharpe: float = pa.Field(nullable=True)
    short_annual_return: float = pa.Field(nullable=True)
    short_annual_volatility: float = pa.Field(nullable=True)
    short_max_dd: float = pa.Field(nullable=True)
    short_hit_rate: float = pa.Field(nullable=True)
    psr: float = pa.Field(nullable=True)
    dsr: float = pa.Field(nullable=True)

    class Config:
        strict = True
        unique = ["date", "strategy", "window"]


class Approvals(pa.DataFrameModel):
    """Supervisor verdict per strategy, date and symbol."""

    date: dt.date
    strategy: str
    symbol: str
    target_weight: float
    approved_weight: float
    approved: bool
    risk_flags: str
    reason: str

    class Config:
        strict = True
        unique = ["date", "strategy", "symbol"]


class AuditLog(pa.DataFrameModel):
    """One row per supervisor rule triggered for a strategy on a date: what was measured, against which
    limit, the action taken and the readable reason (also in the approvals' `risk_flags`)."""

    date: dt.date
    strategy: str
    rule: str
    action: str = pa.Field(isin=["flag", "scale", "reject"])
    limit: float
    measured: float
    reason: str

    class Config:
        strict = True
        unique = ["date", "strategy", "rule"]


class RuleResults(pa.DataFrameModel):
    """One row per world, date, strategy and rule: the per-date record behind the world asset checks."""

    world: str
    date: dt.date
    strategy: str
    rule: str
    family: str
    stage: str = pa.Field(isin=["backtest", "paper", "live", "inactive", "*"])
    status: str = pa.Field(isin=["pass", "fail", "warn", "skip"])
    severity: str = pa.Field(isin=["blocking", "soft", "info"])
    owner: str = pa.Field(isin=["quant", "risk", "ops"])
    reason_code: str
    reason: str
    details: str

    class Config:
        strict = True
        unique = ["world", "date", "strategy", "rule"]


class WorldDecisions(pa.DataFrameModel):
    """One row per world, date and strategy: the state after the day's decision, with reproducibility hashes."""

    world: str
    date: dt.date
    strategy: str
    policy_version: str
    ruleset_hash: str
    input_hash: str
    stage: str = pa.Field(isin=["backtest", "paper", "live", "inactive"])
    stage_since: dt.date = pa.Field(nullable=True)
    pass_streak: pl.Int64 = pa.Field(ge=0)
    fail_streak: pl.Int64 = pa.Field(ge=0)
    selected: bool
    score: float = pa.Field(nullable=True)
    reason_code: str
    evaluate_only: bool

    class Config:
        strict = True
        unique = ["world", "date", "strategy"]


class WorldSnapshots(pa.DataFrameModel):
    """Everything `decide` read for a world and date (JSON), so any stored decision can be re-derived."""

    world: str
    date: dt.date
    input_hash: str
    snapshot: str

    class Config:
        strict = True
        unique = ["world", "date"]


class StageHistory(pa.DataFrameModel):
    """One row per stage transition of a strategy in a world (the lifecycle's audit trail)."""

    world: str
    date: dt.date
    strategy: str
    from_stage: str
    to_stage: str
    reason_code: str

    class Config:
        strict = True
        unique = ["world", "date", "strategy"]


class Overrides(pa.DataFrameModel):
    """Manual decisions on a world's strategy (append-only; `quantlab world override`)."""

    override_id: str = pa.Field(unique=True)
    world: str
    strategy: str
    action: str = pa.Field(isin=["force_active", "force_inactive", "freeze"])
    reason: str = pa.Field(str_length={"min_value": 1})
    actor: str = pa.Field(str_length={"min_value": 1})
    created_at: dt.datetime  # UTC, naive
    effective_from: dt.date
    until: dt.date = pa.Field(nullable=True)

    class Config:
        strict = True


class WorldAllocations(pa.DataFrameModel):
    world: str
    date: dt.date
    strategy: str
    side: str
    weight: float = pa.Field(ge=0)

    class Config:
        strict = True
        unique = ["world", "date", "strategy"]


class WorldReturns(pa.DataFrameModel):
    """The world's own track: allocation decided at t earns the strategies' net returns of t+1.

    `exposure` is the capital allocated over the session (sum of the strategy weights decided the session
    before), `gross_exposure`/`net_exposure` those of the world target book held; `circuit` the drawdown
    circuit breaker's state after the session (it caps the allocation decided at its close), tripped on
    `circuit_since`."""

    world: str
    date: dt.date
    ret: float
    equity: float = pa.Field(gt=0)
    drawdown: float = pa.Field(ge=0)
    exposure: float = pa.Field(ge=0)
    gross_exposure: float = pa.Field(ge=0)
    net_exposure: float
    n_live: pl.Int64 = pa.Field(ge=0)
    circuit: bool
    circuit_since: dt.date = pa.Field(nullable=True)

    class Config:
        strict = True
        unique = ["world", "date"]


class TuningTrials(pa.DataFrameModel):
    """One row per trial of an Optuna tuning study (`quantlab.tuning`), rewritten whole per study.

    `value` is the objective (penalized in penalty mode); `sharpe` (annualized) and `sr_daily` (per period,
    what the deflated Sharpe's trial variance uses) are those of the trial's out-of-sample net returns, the
    folds concatenated (a PRUNED trial: the folds scored before it stopped, and its last reported value);
    `folds` and `params` are JSON; `feasible` is null without constraints.
    """

    study: str
    strategy: str
    strategy_version: pl.Int64 = pa.Field(ge=1)
    trial: pl.Int64 = pa.Field(ge=0)
    state: str = pa.Field(isin=["COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING"])
    value: float = pa.Field(nullable=True)
    sharpe: float = pa.Field(nullable=True)
    sr_daily: float = pa.Field(nullable=True)
    max_dd: float = pa.Field(nullable=True)
    turnover: float = pa.Field(nullable=True)
    oos_days: pl.Int64 = pa.Field(nullable=True)
    feasible: bool = pa.Field(nullable=True)
    params: str
    folds: str
    window_start: dt.date
    window_end: dt.date
    started_at: dt.datetime = pa.Field(nullable=True)  # UTC, naive
    duration_s: float = pa.Field(nullable=True)

    class Config:
        strict = True
        unique = ["study", "trial"]


class WorldTargets(pa.DataFrameModel):
    """The world's target book decided at the close of `date`: the strategies' approved targets weighted by
    their allocation and netted per symbol (long and short across strategies); symbols netting to 0 omitted."""

    world: str
    date: dt.date
    symbol: str
    weight: float

    class Config:
        strict = True
        unique = ["world", "date", "symbol"]


class WorldRiskEvents(pa.DataFrameModel):
    """Every trigger of a world's allocation limits and risk engine, with the value, the limit and why."""

    world: str
    date: dt.date
    event: str = pa.Field(
        isin=[
            "circuit_trip",
            "circuit_release",
            "circuit_cap",
            "daily_loss",
            "max_gross",
            "max_net",
            "max_symbol",
            "budget_unmet",
            "singular_covariance",
            "no_live",
        ]
    )
    value: float = pa.Field(nullable=True)
    limit: float = pa.Field(nullable=True)
    reason: str

    class Config:
        strict = True
        unique = ["world", "date", "event"]


@dataclass(frozen=True)
class Table:
    name: str
    schema: pa.DataFrameSchema
    partition_col: str | None = "date"  # None: not partitioned, written whole (`Warehouse.replace_all`)
    scope: tuple[str, ...] = ()


def _table(name: str, model: type[pa.DataFrameModel] | pa.DataFrameSchema, **kw) -> Table:
    schema = model if isinstance(model, pa.DataFrameSchema) else model.to_schema()
    return Table(name=name, schema=schema, **kw)


TABLES: dict[str, Table] = {
    t.name: t
    for t in [
        _table("ohlcv", Ohlcv),
        _table("quality_issues", QualityIssues),
        _table("symbols", Symbols, partition_col=None),
        _table("anomaly_scores", _anomaly_schema()),
        _table("features", _features_schema()),
        _table("labels", Labels, partition_col="asof_date"),
        _table("targets", Targets),
        _table("models", Models),
        _table("strategy_returns", StrategyReturns),
        _table("trades", Trades),
        _table("kpis", Kpis),
        _table("approvals", Approvals),
        _table("audit_log", AuditLog),
        _table("rule_results", RuleResults, scope=("world",)),
        _table("world_decisions", WorldDecisions, scope=("world",)),
        _table("world_snapshots", WorldSnapshots, scope=("world",)),
        _table("stage_history", StageHistory, scope=("world",)),
        _table("overrides", Overrides, partition_col=None),
        _table("world_allocations", WorldAllocations, scope=("world",)),
        _table("world_returns", WorldReturns, scope=("world",)),
        _table("tuning_trials", TuningTrials, partition_col=None, scope=("study",)),
        _table("world_targets", WorldTargets, scope=("world",)),
        _table("world_risk_events", WorldRiskEvents, scope=("world",)),
    ]
}
