"""Target weights from scores (vectorized polars, one pass for all dates of a range).

A rank strategy's score is its expression over the features; a model strategy's score is precomputed by the
walk-forward models (`quantlab.strategy_lab.model.walk_forward`) and passed in. Either way, `rank_targets`
turns scores into weights. For each date: score every universe symbol with a valid score (non-null, finite), rank, take the top
`long.top` (or the top `long.quantile` of the scored names, at least one) as the long leg and the bottom
`short.top` / `short.quantile` (not already long) as the short leg. Raw leg weights are 1 (equal), |score|
(score) or 1/vol_20 (inverse_vol), normalized so each leg sums to its gross (`Portfolio.leg_gross`: the whole
`gross` for a one-sided book, (gross +- net) / 2 per leg for a long/short one), then capped at `max_weight` per name; what the
cap removes stays in cash (no re-normalization, so the cap is a hard limit). Symbols scored but not
selected get weight 0 and side `flat`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import polars as pl

from quantlab.strategy_lab.spec import Leg, StrategySpec


def strategy_targets(
    features: pl.DataFrame, spec: StrategySpec, scores: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Rows of the `targets` table for one strategy over the dates in `features`.

    `scores` (date, symbol, score) replaces the score expression; a model strategy needs it. Rows of
    `features` without a score get none (they are not candidates that date).
    """
    df = features
    if spec.universe.symbols is not None:
        df = df.filter(pl.col("symbol").is_in(spec.universe.symbols))
    if scores is not None:
        df = (
            df.select("date", "symbol", "vol_20")
            .join(scores.select("date", "symbol", "score"), on=["date", "symbol"], how="left")
            .with_columns(pl.col("score").cast(pl.Float64).fill_null(np.nan))
        )
        return rank_targets(df, spec)
    if spec.is_model:
        raise ValueError(f"strategy '{spec.id}' is a model strategy: pass its walk-forward scores")
    env = {
        name: df.get_column(name).cast(pl.Float64).fill_null(np.nan).to_numpy()
        for name in spec.score_expr.names
    }
    score = np.broadcast_to(np.asarray(spec.score_expr.evaluate(env), dtype=np.float64), (df.height,))
    return rank_targets(df.select("date", "symbol", "vol_20").with_columns(score=pl.Series(score)), spec)


def rank_targets(scored: pl.DataFrame, spec: StrategySpec) -> pl.DataFrame:
    """Targets from a frame of (date, symbol, vol_20, score) already restricted to the universe; rows whose
    score is NaN or infinite are dropped."""
    df = scored.filter(pl.col("score").is_not_nan() & pl.col("score").is_finite()).sort("date", "symbol")
    port = spec.portfolio
    n_long, n_short = _leg_size(port.long), _leg_size(port.short)
    long_gross, short_gross = port.leg_gross
    # rank by score within each date; equal scores rank by symbol (ordinal ties follow the row order)
    df = df.with_columns(
        rank_desc=(-pl.col("score")).rank("ordinal").over("date").cast(pl.Int64) - 1,
        count=pl.len().over("date"),
    )
    is_long = pl.col("rank_desc") < n_long
    is_short = (pl.col("count") - 1 - pl.col("rank_desc") < n_short) & ~is_long
    side = (
        pl.when(is_long).then(pl.lit("long")).when(is_short).then(pl.lit("short")).otherwise(pl.lit("flat"))
    )
    raw = {
        "equal": pl.lit(1.0),
        "score": pl.col("score").abs(),
        "inverse_vol": 1.0 / pl.col("vol_20"),
    }[port.weighting]
    df = df.with_columns(side=side, raw=pl.when(raw.is_finite() & (raw > 0)).then(raw).otherwise(None))
    df = df.with_columns(
        leg_sum=pl.col("raw").sum().over("date", "side"),
    ).with_columns(
        weight=pl.when(pl.col("side") == "flat")
        .then(0.0)
        .otherwise(
            (
                pl.col("raw")
                / pl.col("leg_sum")
                * pl.when(pl.col("side") == "long").then(long_gross).otherwise(short_gross)
            )
            .fill_null(0.0)
            .clip(upper_bound=port.max_weight)
        )
    )
    return df.select(
        "date",
        pl.lit(spec.id).alias("strategy"),
        "symbol",
        "score",
        pl.when(pl.col("side") == "short")
        .then(-pl.col("weight"))
        .otherwise(pl.col("weight"))
        .alias("weight"),
        "side",
    )


def _leg_size(leg: Leg) -> pl.Expr:
    """Names in a leg on each date: `top`, or `quantile` of the names scored that date (at least one)."""
    if leg.quantile is not None:
        return (pl.col("count") * leg.quantile).floor().clip(lower_bound=1).cast(pl.Int64)
    return pl.lit(leg.top, dtype=pl.Int64)


def all_targets(
    features: pl.DataFrame,
    specs: dict[str, StrategySpec],
    scores: Mapping[str, pl.DataFrame] | None = None,
) -> pl.DataFrame:
    """Targets of every strategy, concatenated; `scores` gives the precomputed scores by strategy id."""
    scores = scores or {}
    frames = [strategy_targets(features, spec, scores.get(sid)) for sid, spec in specs.items()]
    return pl.concat(frames) if frames else pl.DataFrame()
