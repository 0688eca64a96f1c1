"""Strategy files (`strategies/*.yaml`) parsed into strict pydantic models.

A strategy is configuration: a universe, a signal (a safe expression over feature names, see
`quantlab.expressions`), portfolio construction, a rebalance schedule, execution and costs, and optional
per-strategy risk limits for the supervisor.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from quantlab.config import ConfigError, Strict, load_directory, load_yaml_model
from quantlab.expressions import Expr, parse
from quantlab.features.library import FEATURE_NAMES
from quantlab.supervisor.spec import RiskLimits

ID_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"


class Universe(Strict):
    symbols: list[str] | None = Field(default=None, min_length=1)
    all: bool = False

    @model_validator(mode="after")
    def _one(self) -> Universe:
        if bool(self.symbols) == self.all:
            raise ValueError("give either `symbols: [...]` or `all: true`")
        return self


class RankSignal(Strict):
    kind: Literal["rank"] = "rank"
    score: str = Field(description="Safe expression over feature names; higher = more attractive.")


class Leg(Strict):
    top: int = Field(default=0, ge=0, description="Number of names in this leg (0 disables it).")


class Portfolio(Strict):
    long: Leg = Leg(top=1)
    short: Leg = Leg(top=0)
    weighting: Literal["equal", "score", "inverse_vol"] = "equal"
    max_weight: float = Field(default=1.0, gt=0, le=1.0, description="Cap on |weight| per name.")
    gross: float = Field(default=1.0, gt=0, le=4.0, description="Gross exposure; split evenly if both legs.")

    @model_validator(mode="after")
    def _legs(self) -> Portfolio:
        if self.long.top == 0 and self.short.top == 0:
            raise ValueError("at least one of long.top and short.top must be >= 1")
        return self

    @property
    def side(self) -> Literal["long", "short", "long_short"]:
        if self.long.top and self.short.top:
            return "long_short"
        return "long" if self.long.top else "short"


class Rebalance(Strict):
    every: int = Field(default=1, ge=1, le=252, description="Sessions between rebalances.")


class Execution(Strict):
    price: Literal["open", "close"] = "open"
    lag: int = Field(default=1, ge=1, le=20, description="Bars between decision and execution (never 0).")
    participation_cap: float | None = Field(
        default=None, gt=0, le=1, description="Max order per symbol as a fraction of its average daily value."
    )
    adv_window: int = Field(
        default=20, ge=1, le=252, description="Sessions of the average daily traded value."
    )
    capital: float = Field(
        default=10_000_000.0, gt=0, description="Portfolio capital (currency) for the cap."
    )


class Cash(Strict):
    """What uninvested cash earns: nothing (default), a constant `annual_rate`, or a risk-free `series`
    (a CSV file with columns `date` and `rate`, annualized decimal rates; relative to the strategy file)."""

    annual_rate: float | None = Field(default=None, ge=-0.05, le=0.25, description="Constant rate per year.")
    series: str | None = Field(default=None, description="CSV of annualized risk-free rates (date, rate).")

    @model_validator(mode="after")
    def _one(self) -> Cash:
        if self.annual_rate is not None and self.series is not None:
            raise ValueError("give either `annual_rate` or `series`, not both")
        return self

    @property
    def earns(self) -> bool:
        return bool(self.annual_rate) or self.series is not None


class Costs(Strict):
    fee_bps: float = Field(default=1.0, ge=0, le=1000)
    slippage_bps: float = Field(default=5.0, ge=0, le=1000)


class StrategySpec(Strict):
    id: str = Field(pattern=ID_PATTERN)
    version: int = Field(default=1, ge=1)
    description: str = ""
    tags: list[str] = []
    universe: Universe
    signal: RankSignal
    portfolio: Portfolio = Portfolio()
    rebalance: Rebalance = Rebalance()
    execution: Execution = Execution()
    costs: Costs = Costs()
    cash: Cash = Cash()
    risk: RiskLimits = RiskLimits()

    @cached_property
    def score_expr(self) -> Expr:
        return parse(self.signal.score, names=FEATURE_NAMES, boolean=False)

    @property
    def side(self) -> str:
        return self.portfolio.side


def _check(spec: StrategySpec) -> None:
    try:
        spec.score_expr  # noqa: B018 - parse now so errors surface at load
    except ValueError as exc:
        raise ValueError(f"signal.score: {exc}") from None


def load_strategy(path: Path) -> StrategySpec:
    """Parse and validate one strategy file (ConfigError names file, line, field and reason)."""
    spec = load_yaml_model(path, StrategySpec, check=_check)
    if spec.id != path.stem:
        raise ConfigError(f"{path}:1: id: '{spec.id}' must equal the file name '{path.stem}'")
    if spec.cash.series is not None:
        series = (path.parent / spec.cash.series).resolve()
        if not series.is_file():
            raise ConfigError(f"{path}: cash.series: no file {series}")
        spec = spec.model_copy(update={"cash": spec.cash.model_copy(update={"series": str(series)})})
    return spec


def load_strategies(directory: Path) -> dict[str, StrategySpec]:
    """Every `*.yaml` strategy in `directory`, by id; errors of all files are reported together."""
    return load_directory(directory, load_strategy)
