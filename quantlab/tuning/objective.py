"""Scoring one set of parameters: walk-forward folds, each its own backtest, net of costs.

For every fold (`quantlab.tuning.folds`) the strategy with the trial's parameters is run exactly as the
chain runs it, on the fold's dates only: targets from the features (`quantlab.strategy_lab.targets`; a model
strategy's scores come from its walk-forward models, `quantlab.strategy_lab.model.walk_forward`), then the
backtest engine through `quantlab.backtest.run.backtest_strategy` (next-bar execution, costs, participation
cap, cash). Each fold's book starts flat one rebalance cycle + lag before the fold (the engine's warm-up,
plus the ADV window when a participation cap needs it), so folds never share positions.

Scores use `quantlab.metrics` only: per fold Sharpe, annual return, max drawdown and mean turnover of the
net returns; over the trial, the objective (Sharpe, Sortino or Calmar) of the folds' net returns
concatenated, their per-period Sharpe (`sr_daily`, what the deflated Sharpe's trial variance is made of),
the worst fold drawdown and the mean turnover.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import polars as pl

from quantlab import metrics
from quantlab.backtest.run import backtest_strategy, warmup_start
from quantlab.calendar import shift_sessions
from quantlab.features.sets import FeatureSet
from quantlab.strategy_lab.model import ModelCache, walk_forward
from quantlab.strategy_lab.spec import StrategySpec
from quantlab.strategy_lab.targets import strategy_targets
from quantlab.tuning.folds import Fold

OBJECTIVES: dict[str, Callable[[np.ndarray], float]] = {
    "sharpe": metrics.sharpe_ratio,
    "sortino": metrics.sortino_ratio,
    "calmar": metrics.calmar_ratio,
}
BAR_COLUMNS = ["symbol", "date", "open", "close", "close_raw", "volume"]


@dataclass(frozen=True)
class TuningData:
    """What a study reads, loaded once: the features (from the strategy's warm-up before the window),
    the bars (`BAR_COLUMNS`), and for a model strategy its labels and feature set."""

    features: pl.DataFrame
    bars: pl.DataFrame
    labels: pl.DataFrame | None = None
    feature_set: FeatureSet | None = None
    cache: ModelCache = field(default_factory=lambda: ModelCache(None))


@dataclass(frozen=True)
class FoldScore:
    fold: int
    start: dt.date
    end: dt.date
    days: int
    sharpe: float
    annual_return: float
    max_dd: float
    turnover: float


@dataclass(frozen=True)
class TrialScore:
    """A trial's out-of-sample scores (NaN where undefined, e.g. no position in any fold)."""

    objective: float
    sharpe: float
    sr_daily: float
    max_dd: float
    turnover: float
    days: int
    folds: list[FoldScore]

    def fold_dicts(self) -> list[dict]:
        return [{**asdict(f), "start": f.start.isoformat(), "end": f.end.isoformat()} for f in self.folds]


def fold_returns(spec: StrategySpec, data: TuningData, fold: Fold) -> pl.DataFrame:
    """`strategy_returns` rows of `spec` over [fold.start, fold.end], the book starting flat before it."""
    lo = warmup_start(fold.start, spec, None)  # one rebalance cycle + lag: the fold's first decisions
    feats = data.features.filter(pl.col("date").is_between(lo, fold.end))
    if spec.is_model:
        if data.labels is None or data.feature_set is None:
            raise ValueError(f"model strategy '{spec.id}': tuning data needs its labels and feature set")
        wf = walk_forward(data.features, data.labels, spec, data.feature_set, lo, fold.end, data.cache)
        targets = strategy_targets(feats, spec, wf.scores)
    else:
        targets = strategy_targets(feats, spec)
    held = targets.filter(pl.col("weight") != 0)
    inception = held.get_column("date").min() if held.height else None
    bars_lo = lo
    if spec.execution.participation_cap is not None:  # the ADV behind the cap is known from the first day
        bars_lo = shift_sessions(lo, -(spec.execution.adv_window + 1))
    bars = data.bars.filter(pl.col("date").is_between(bars_lo, fold.end))
    returns, _ = backtest_strategy(bars, targets, spec, fold.start, fold.end, inception)
    return returns


def _column(frames: Sequence[pl.DataFrame], name: str) -> np.ndarray:
    parts = [f.get_column(name).to_numpy() for f in frames if f.height]
    return np.concatenate(parts) if parts else np.empty(0)


def score_folds(returns: Sequence[pl.DataFrame], folds: Sequence[Fold], objective: str) -> TrialScore:
    """Scores of the folds' `strategy_returns` rows (one frame per fold, in fold order)."""
    fold_scores = []
    for fold, r in zip(folds, returns, strict=True):
        net = _column([r], "net")
        fold_scores.append(
            FoldScore(
                fold=fold.index,
                start=fold.start,
                end=fold.end,
                days=int(net.size),
                sharpe=metrics.sharpe_ratio(net),
                annual_return=metrics.annual_return(net),
                max_dd=metrics.max_drawdown(net),
                turnover=metrics.turnover(_column([r], "turnover")),
            )
        )
    net = _column(returns, "net")
    dds = [f.max_dd for f in fold_scores if not math.isnan(f.max_dd)]
    return TrialScore(
        objective=OBJECTIVES[objective](net),
        sharpe=metrics.sharpe_ratio(net),
        sr_daily=metrics.sharpe_stats(net)[0],
        max_dd=max(dds) if dds else float("nan"),
        turnover=metrics.turnover(_column(returns, "turnover")),
        days=int(net.size),
        folds=fold_scores,
    )
