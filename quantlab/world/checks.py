"""Pass/fail of a world's rule families from its rule results (shared by the asset checks and the CLI).

A family fails when one of its rule results has status `fail` for a strategy that is active (paper or
live) at the time, or for the world itself (strategy `*`); `info` families never fail.
"""

from __future__ import annotations

import polars as pl

from quantlab.world.spec import WorldSpec


def family_failures(rules: pl.DataFrame, family: str) -> pl.DataFrame:
    """The rule results that make `family` fail."""
    return rules.filter(
        (pl.col("family") == family)
        & (pl.col("status") == "fail")
        & pl.col("stage").is_in(["paper", "live", "*"])
    )


def family_passed(world: WorldSpec, family: str, rules: pl.DataFrame) -> bool:
    return world.rule(family).severity == "info" or family_failures(rules, family).is_empty()


def allocation_violations(
    world: WorldSpec,
    allocations: pl.DataFrame,
    targets: pl.DataFrame,
    returns: pl.DataFrame,
    decisions: pl.DataFrame,
) -> dict[str, pl.DataFrame]:
    """The rows breaking each allocation check (empty = passed), per name:

    - `budgets`: a side's sum above its `gross_budget`, the total above 1, the world book's gross or |net|
      above `max_gross` / `max_net`, the total above the circuit breaker's `cut_to` while it is on;
    - `weight_limits`: a weight below 0 or above `max_weight`, a symbol of the world book above
      `risk.exposure.max_symbol`;
    - `live_only`: capital for a strategy that is not live that day (evaluate-only days keep the previous
      allocation and are exempt).
    """
    alloc = world.allocation
    eps = 1e-9
    cols = {"date": pl.Date, "what": pl.String, "value": pl.Float64, "limit": pl.Float64}
    by_side = allocations.group_by("date", "side").agg(pl.col("weight").sum().alias("value"))
    budgets = [
        by_side.with_columns(
            limit=pl.col("side").replace_strict(alloc.gross_budget, default=1.0, return_dtype=pl.Float64),
            what=pl.format("side {} budget", pl.col("side")),
        ),
        allocations.group_by("date")
        .agg(pl.col("weight").sum().alias("value"))
        .with_columns(limit=pl.lit(1.0), what=pl.lit("total capital")),
    ]
    book = targets.group_by("date").agg(
        pl.col("weight").abs().sum().alias("gross"),
        pl.col("weight").sum().abs().alias("net"),
        pl.col("weight").abs().max().alias("symbol"),
    )
    for name, limit in (("gross", alloc.max_gross), ("net", alloc.max_net)):
        if limit is not None:
            budgets.append(
                book.select("date", value=name, limit=pl.lit(limit), what=pl.lit(f"world book {name}"))
            )
    circuit = world.risk.drawdown_circuit
    if circuit is not None:
        on = returns.filter("circuit").select("date")
        total = allocations.group_by("date").agg(pl.col("weight").sum().alias("value"))
        budgets.append(
            total.join(on, on="date").with_columns(
                limit=pl.lit(circuit.cut_to), what=pl.lit("circuit cut_to")
            )
        )
    over = pl.concat([b.select(list(cols)).cast(cols) for b in budgets]).filter(  # type: ignore[arg-type]
        pl.col("value") > pl.col("limit") + eps
    )
    limits = [
        allocations.filter((pl.col("weight") < 0) | (pl.col("weight") > alloc.max_weight + eps)).select(
            "date",
            what=pl.format("strategy {}", pl.col("strategy")),
            value="weight",
            limit=pl.lit(alloc.max_weight),
        )
    ]
    if world.risk.exposure is not None:
        cap = world.risk.exposure.max_symbol
        limits.append(
            targets.filter(pl.col("weight").abs() > cap + eps).select(
                "date",
                what=pl.format("symbol {}", pl.col("symbol")),
                value=pl.col("weight").abs(),
                limit=pl.lit(cap),
            )
        )
    stage = decisions.select("date", "strategy", "stage", "evaluate_only")
    not_live = (
        allocations.filter(pl.col("weight") > 0)
        .join(stage, on=["date", "strategy"], how="left")
        .filter((pl.col("stage") != "live").fill_null(True) & ~pl.col("evaluate_only").fill_null(False))
    )
    return {
        "budgets": over.sort("date", "what"),
        "weight_limits": pl.concat([x.select(list(cols)).cast(cols) for x in limits]).sort("date", "what"),  # type: ignore[arg-type]
        "live_only": not_live.select("date", "strategy", "stage", "weight"),
    }
