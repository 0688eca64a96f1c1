"""Supervisor risk rules: global defaults in `supervisor.yaml`, per-strategy overrides in a strategy's `risk:`.

Each rule has a limit and an action:
- `flag`: approve unchanged, record a risk flag;
- `scale`: shrink the weights until the limit holds, record a flag;
- `reject`: approve nothing for that strategy on that date.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from quantlab.config import Strict, load_yaml_model

Action = Literal["flag", "scale", "reject"]


class Rule(Strict):
    limit: float = Field(ge=0)
    action: Action


class ScoreFloor(Strict):
    """`min_score`: the least conviction a held name may have (score for a long, -score for a short)."""

    limit: float
    action: Action


class RiskLimits(Strict):
    """The rules of one strategy; per-strategy overrides: any rule given here replaces the global one.

    Order of application (each on the weights the previous one left): `max_drawdown`, `min_score`,
    `max_positions`, `max_symbol_weight`, `max_long_gross`, `max_short_gross`, `max_gross`, `max_net`,
    `max_turnover` (see `quantlab.supervisor.rules`).
    """

    max_drawdown: Rule | None = None
    min_score: ScoreFloor | None = None
    max_positions: Rule | None = None
    max_symbol_weight: Rule | None = None
    max_long_gross: Rule | None = None
    max_short_gross: Rule | None = None
    max_gross: Rule | None = None
    max_net: Rule | None = None
    max_turnover: Rule | None = None


class SupervisorSpec(Strict):
    rules: RiskLimits = RiskLimits(
        max_symbol_weight=Rule(limit=0.5, action="scale"),
        max_positions=Rule(limit=20, action="reject"),
        max_gross=Rule(limit=2.0, action="scale"),
        max_net=Rule(limit=1.0, action="flag"),
        max_drawdown=Rule(limit=0.6, action="reject"),
    )

    def for_strategy(self, overrides: RiskLimits) -> RiskLimits:
        """The effective rules for a strategy: its own where given, the global ones elsewhere."""
        merged = self.rules.model_dump() | {k: v for k, v in overrides.model_dump().items() if v is not None}
        return RiskLimits.model_validate(merged)


def load_supervisor(path: Path) -> SupervisorSpec:
    """`supervisor.yaml` if it exists, else the defaults."""
    return load_yaml_model(path, SupervisorSpec) if path.exists() else SupervisorSpec()
