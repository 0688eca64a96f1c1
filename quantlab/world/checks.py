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
