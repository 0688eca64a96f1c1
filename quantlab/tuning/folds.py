"""Walk-forward test folds of a study window, with purge and embargo.

The window's sessions are cut into `n` contiguous segments of (nearly) equal length, in time order. Every
fold but the first leaves out its first `purge + embargo` sessions:

* purge: a position decided at the close of day t is executed `lag` sessions later and held until the next
  rebalance, so it earns returns for up to `rebalance.every + lag` sessions. Leaving that many sessions out
  means no return scored in a fold comes from a decision taken in the previous fold's scored range.
* embargo: extra sessions on top, against the serial correlation of slow signals (e.g. long lookbacks).

Each fold is evaluated on its own backtest (`quantlab.tuning.objective`), which only ever uses data up to
the session it decides on; model strategies are trained walk-forward by `quantlab.strategy_lab.model`
(training rows purged by their label horizon plus the signal's embargo), so every scored return is out of
sample for the strategy's fitted state. The tuning's own selection among trials is not out of sample: the
number of trials and the spread of their Sharpe ratios are what the deflated Sharpe accounts for.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from quantlab.strategy_lab.spec import StrategySpec, apply_params


@dataclass(frozen=True)
class Fold:
    """One test fold: its scored sessions [start, end] (`index` from 0, in time order)."""

    index: int
    start: dt.date
    end: dt.date
    sessions: int


def walk_forward_folds(sessions: Sequence[dt.date], n: int, purge: int, embargo: int = 0) -> list[Fold]:
    """`n` folds over `sessions` (sorted, distinct); ValueError when a fold would keep fewer than 2
    sessions after the gap."""
    if n < 1:
        raise ValueError(f"need at least one fold, got {n}")
    if purge < 0 or embargo < 0:
        raise ValueError("purge and embargo must be >= 0")
    days = list(sessions)
    bounds = [round(i * len(days) / n) for i in range(n + 1)]
    gap = purge + embargo
    folds = []
    for i in range(n):
        lo = bounds[i] + (gap if i else 0)
        hi = bounds[i + 1] - 1
        if hi - lo + 1 < 2:
            raise ValueError(
                f"{len(days)} sessions are too few for {n} folds with a gap of {gap} sessions "
                f"(purge {purge} + embargo {embargo}): fold {i} would keep {max(hi - lo + 1, 0)}"
            )
        folds.append(Fold(i, days[lo], days[hi], hi - lo + 1))
    return folds


def holding_horizon(spec: StrategySpec) -> int:
    """Longest `rebalance.every + execution.lag` of `spec` and of every bound / choice of its search space
    (the default purge, the same for every trial so all trials are scored on the same folds)."""
    specs = [spec]
    if spec.tuning is not None:
        for path, param in spec.tuning.params.items():
            specs += [apply_params(spec, {path: value}) for value in param.candidates]
    return max(s.rebalance.every + s.execution.lag for s in specs)
