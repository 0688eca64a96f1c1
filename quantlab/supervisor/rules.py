"""Apply risk rules to targets: approvals with final weights, flags and readable reasons (vectorized).

Rules run in this order per (date, strategy), each on the weights left by the previous one:
1. `max_drawdown`: the strategy's as-of max drawdown over its full history (KPI `max_dd`, window `full`);
2. `max_positions`: number of non-zero names (`scale` keeps the largest |weight|, ties by symbol);
3. `max_symbol_weight`: largest |weight| (`scale` clips each name);
4. `max_gross`: sum |weight| (`scale` shrinks the book proportionally);
5. `max_net`: |sum weight| (`scale` shrinks the book proportionally).
`flag` only records, `reject` approves nothing for that strategy and date. Every row carries the
strategy-level flags so a reader sees why a name was cut.
"""

from __future__ import annotations

import polars as pl

from quantlab.supervisor.spec import RiskLimits, Rule

_W = pl.col("w")
_BY = ("date",)


def _measures() -> dict[str, pl.Expr]:
    return {
        "max_drawdown": pl.col("max_dd").fill_null(0.0),
        "max_positions": (_W != 0).sum().over(_BY).cast(pl.Float64),
        "max_symbol_weight": _W.abs().max().over(_BY),
        "max_gross": _W.abs().sum().over(_BY),
        "max_net": _W.sum().over(_BY).abs(),
    }


def _scaled(name: str, rule: Rule, hit: pl.Expr) -> pl.Expr:
    if name == "max_positions":
        keep = _W.abs().rank("ordinal", descending=True).over(_BY) <= rule.limit
        return pl.when(keep).then(_W).otherwise(0.0)
    if name == "max_symbol_weight":
        return _W.clip(-rule.limit, rule.limit)
    if name in ("max_gross", "max_net"):
        return pl.when(hit).then(_W * rule.limit / pl.col("_m")).otherwise(_W)
    return _W  # drawdown cannot be scaled away: scale acts as flag


def approve(targets: pl.DataFrame, kpis_full: pl.DataFrame, limits: RiskLimits) -> pl.DataFrame:
    """Approvals for one strategy.

    `targets`: rows (date, strategy, symbol, weight); zero weights are dropped. `kpis_full`: the strategy's
    as-of KPIs for the `full` window (date, max_dd).
    """
    df = (
        targets.filter(pl.col("weight") != 0)
        .sort("date", "symbol")  # deterministic ties for max_positions scaling
        .join(kpis_full.select("date", "max_dd"), on="date", how="left")
        .with_columns(w=pl.col("weight"), flags=pl.lit(""), rejected=pl.lit(False))
    )
    measures = _measures()
    for name in measures:
        rule: Rule | None = getattr(limits, name)
        if rule is None:
            continue
        df = df.with_columns(_m=measures[name])
        hit = pl.col("_m") > rule.limit + 1e-12
        text = pl.format(f"{name}[{rule.action}]: {{}} > {rule.limit:g}", pl.col("_m").round(4))
        df = df.with_columns(
            w=_scaled(name, rule, hit) if rule.action == "scale" else _W,
            flags=pl.when(hit)
            .then(
                pl.when(pl.col("flags") == "")
                .then(text)
                .otherwise(pl.concat_str([pl.col("flags"), text], separator="; "))
            )
            .otherwise(pl.col("flags")),
            rejected=pl.col("rejected") | (hit & pl.lit(rule.action == "reject")),
        )
    return df.select(
        "date",
        "strategy",
        "symbol",
        pl.col("weight").alias("target_weight"),
        pl.when(pl.col("rejected")).then(0.0).otherwise(_W).alias("approved_weight"),
        (~pl.col("rejected")).alias("approved"),
        pl.col("flags").alias("risk_flags"),
        pl.when(pl.col("rejected"))
        .then(pl.format("rejected: {}", pl.col("flags")))
        .when(pl.col("flags") != "")
        .then(pl.format("approved with adjustments: {}", pl.col("flags")))
        .otherwise(pl.lit("approved: within all risk limits"))
        .alias("reason"),
    ).sort("date", "symbol")
