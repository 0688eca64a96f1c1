"""World files (`worlds/*.yaml`) parsed into strict pydantic models, with load-time validation.

The metric vocabulary a world's gates and score may use (`metric_names`):
- `<metric>_<window>` for every KPI metric (`KPI_METRICS`) and every window the world names (plus `full`),
  e.g. `sharpe_mid`, `max_dd_long`, `hit_rate_full`, `trades_mid`, and the legs `long_sharpe_mid`,
  `short_max_dd_long` (`LEG_COLUMNS`); windows map to the backtester's KPI windows;
- `sample_days` (returns since inception), `psr`, `dsr` (full history), `data_lag` (sessions since the
  world's newest bar), `paper_days` and `sharpe_paper` (the out-of-sample track since the current stage
  began; NaN outside paper/live).
An unknown metric, an undefined window, a top-K larger than the candidate set or an inconsistent
hysteresis is a load-time error naming the file, line and field.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from quantlab.backtest.kpis import KPI_METRICS, KPI_WINDOWS
from quantlab.config import ConfigError, Strict, load_directory, load_yaml_model
from quantlab.expressions import Expr, ExpressionError, Gate, parse, parse_gate
from quantlab.strategy_lab.spec import ID_PATTERN, StrategySpec

STAGES = ("backtest", "paper", "live", "inactive")
SIDES = ("long", "short", "long_short")
FAMILIES = ("data_currency", "sample", "gates", "correlation", "selection", "lifecycle")
EXTRA_METRICS = ("sample_days", "psr", "dsr", "data_lag", "paper_days", "sharpe_paper")

_DAYS = re.compile(r"^(\d+)d$")


def days(value: str | int) -> int:
    """`'20d'` or `20` -> 20 (sessions); negative counts are rejected."""
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{value} is negative: a number of sessions must be >= 0")
        return value
    m = _DAYS.match(str(value))
    if not m:
        raise ValueError(f"'{value}' is not a number of sessions like '20d'")
    return int(m.group(1))


Sessions = int | str


class StrategySelector(Strict):
    tags: list[str] | None = None
    ids: list[str] | None = None

    @model_validator(mode="after")
    def _one(self) -> StrategySelector:
        if (self.tags is None) == (self.ids is None):
            raise ValueError("give either `tags: [...]` or `ids: [...]`")
        return self


class DataCurrency(Strict):
    max_lag: Sessions = "3d"
    min_history: Sessions = "252d"

    @field_validator("max_lag", "min_history")
    @classmethod
    def _sessions(cls, v: Sessions) -> Sessions:
        days(v)
        return v


class StageProfile(Strict):
    gates: Any = Field(
        description="A gate: expression string, {and: [...]}, {or: [...]}, {not: ...} or a list."
    )
    min_days: Sessions = Field(default="0d", description="Sessions in this stage before its gates apply.")


class TopK(Strict):
    total: int = Field(ge=1)
    by_side: dict[Literal["long", "short", "long_short"], int] = {}


class Correlation(Strict):
    max_pairwise: float = Field(gt=-1, le=1)
    window: str = "mid"


class Hysteresis(Strict):
    promote_after: int = Field(default=1, ge=1)
    demote_after: int = Field(default=1, ge=1)
    min_dwell: Sessions = "0d"


class Selection(Strict):
    score: str
    topk: TopK
    correlation: Correlation | None = None
    hysteresis: Hysteresis = Hysteresis()


class RiskParity(Strict):
    """Risk parity's covariance: the strategies' net returns over `window` sessions up to the decision
    date (a missing return counts as 0), shrunk toward mu * I: Ledoit-Wolf's intensity or a constant."""

    window: Sessions = "60d"
    shrinkage: Literal["ledoit_wolf"] | Annotated[float, Field(ge=0, le=1)] = "ledoit_wolf"

    @field_validator("window")
    @classmethod
    def _window(cls, v: Sessions) -> Sessions:
        if days(v) < 2:
            raise ValueError("a covariance window needs at least 2 sessions")
        return v


class Allocation(Strict):
    method: Literal["equal", "inverse_vol", "score", "risk_parity"] = "equal"
    max_weight: float = Field(default=1.0, gt=0, le=1)
    full_investment: bool = Field(
        default=False,
        description="Redistribute what `max_weight` cuts to the uncapped strategies (else it stays in cash).",
    )
    gross_budget: dict[Literal["long", "short", "long_short"], Annotated[float, Field(ge=0)]] = {
        "long": 1.0,
        "short": 1.0,
        "long_short": 1.0,
    }
    vol_window: str = "mid"
    risk_parity: RiskParity = RiskParity()
    max_gross: float | None = Field(
        default=None, gt=0, description="Cap on sum |w| of the world target book."
    )
    max_net: float | None = Field(default=None, ge=0, description="Cap on |sum w| of the world target book.")
    smoothing: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="Weight of the previous allocation: w = s * w_prev + (1 - s) * w_new.",
    )


class DrawdownCircuit(Strict):
    max_dd: float = Field(gt=0, lt=1, description="World drawdown that trips the breaker.")
    cut_to: float = Field(default=0.0, ge=0, description="Capital the world may deploy while tripped.")
    cooldown: Sessions = "20d"
    resume_below: float | None = Field(
        default=None,
        ge=0,
        description="Drawdown at or under which it resets after the cooldown (max_dd / 2).",
    )

    @field_validator("cooldown")
    @classmethod
    def _cooldown(cls, v: Sessions) -> Sessions:
        days(v)
        return v

    @model_validator(mode="after")
    def _resume(self) -> DrawdownCircuit:
        if self.resume_below is not None and self.resume_below >= self.max_dd:
            raise ValueError(f"resume_below {self.resume_below} must be below max_dd {self.max_dd}")
        return self

    @property
    def resume(self) -> float:
        return self.max_dd / 2 if self.resume_below is None else self.resume_below


class DailyLoss(Strict):
    limit: float = Field(gt=0, description="A session return at or below -limit trips it.")
    cut_to: float = Field(default=0.0, ge=0, description="Capital the world may deploy the next session.")


class Exposure(Strict):
    max_symbol: float = Field(gt=0, description="Cap on |weight| of one symbol in the world target book.")


class WorldRisk(Strict):
    """The world risk engine (see `quantlab.world.allocate`)."""

    drawdown_circuit: DrawdownCircuit | None = None
    daily_loss: DailyLoss | None = None
    exposure: Exposure | None = None


class RulePolicy(Strict):
    severity: Literal["blocking", "soft", "info"]
    owner: Literal["quant", "risk", "ops"]


DEFAULT_RULES: dict[str, RulePolicy] = {
    "data_currency": RulePolicy(severity="blocking", owner="ops"),
    "sample": RulePolicy(severity="soft", owner="quant"),
    "gates": RulePolicy(severity="soft", owner="quant"),
    "correlation": RulePolicy(severity="soft", owner="risk"),
    "selection": RulePolicy(severity="soft", owner="risk"),
    "lifecycle": RulePolicy(severity="info", owner="risk"),
}


class WorldSpec(Strict):
    id: str = Field(pattern=ID_PATTERN)
    version: int = Field(default=1, ge=1)
    description: str = ""
    owners: list[str] = Field(min_length=1)
    strategies: StrategySelector
    windows: dict[str, str] = {"short": "20d", "mid": "60d", "long": "252d"}
    data_currency: DataCurrency = DataCurrency()
    stages: dict[Literal["backtest", "paper", "live"], StageProfile]
    selection: Selection
    allocation: Allocation = Allocation()
    risk: WorldRisk = WorldRisk()
    rules: dict[
        Literal["data_currency", "sample", "gates", "correlation", "selection", "lifecycle"], RulePolicy
    ] = {}
    on_missing_metric: Literal["fail", "warn", "ignore"] = "fail"

    @field_validator("windows")
    @classmethod
    def _windows(cls, v: dict[str, str]) -> dict[str, str]:
        for name, kpi_window in v.items():
            if not re.fullmatch(r"[a-z][a-z0-9]*", name) or name == "full":
                raise ValueError(f"window name '{name}' must be lower-case letters/digits and not 'full'")
            if kpi_window not in KPI_WINDOWS:
                raise ValueError(
                    f"window '{name}: {kpi_window}' is not a KPI window ({', '.join(KPI_WINDOWS)})"
                )
        return v

    @field_validator("stages")
    @classmethod
    def _stages(cls, v: dict[str, StageProfile]) -> dict[str, StageProfile]:
        if "backtest" not in v or "paper" not in v:
            raise ValueError("stages must define at least `backtest` and `paper` profiles")
        return v

    def rule(self, family: str) -> RulePolicy:
        return self.rules.get(family, DEFAULT_RULES[family])  # type: ignore[call-overload]

    @cached_property
    def metric_names(self) -> frozenset[str]:
        windows = [*self.windows, "full"]
        return frozenset({f"{m}_{w}" for m in KPI_METRICS for w in windows} | set(EXTRA_METRICS))

    def kpi_window(self, name: str) -> str:
        """The backtester KPI window behind a world window name (`full` is itself)."""
        return "full" if name == "full" else self.windows[name]

    @cached_property
    def gates(self) -> dict[str, Gate]:
        """Gate per stage; `live` falls back to `backtest`, `inactive` uses `backtest`."""
        parsed = {
            stage: parse_gate(p.gates, names=self.metric_names, path=f"stages.{stage}.gates")
            for stage, p in self.stages.items()
        }
        parsed.setdefault("live", parsed["backtest"])
        parsed["inactive"] = parsed["backtest"]
        return parsed

    @cached_property
    def score_expr(self) -> Expr:
        return parse(self.selection.score, names=self.metric_names, boolean=False)

    def min_days(self, stage: str) -> int:
        profile = self.stages.get(stage)  # type: ignore[call-overload]
        return days(profile.min_days) if profile else 0

    @cached_property
    def policy_version(self) -> str:
        return f"{self.id}@v{self.version}"

    @cached_property
    def ruleset_hash(self) -> str:
        """sha256 of the canonical policy (parsed expressions in normal form), short."""
        doc = self.model_dump(mode="json")
        doc["_canonical"] = {
            "gates": {s: g.canonical() for s, g in self.gates.items()},
            "score": self.score_expr.canonical(),
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]

    def members(self, strategies: dict[str, StrategySpec]) -> list[str]:
        """Ids of the strategies this world governs (sorted)."""
        if self.strategies.ids is not None:
            return sorted(self.strategies.ids)
        tags = set(self.strategies.tags or [])
        return sorted(s.id for s in strategies.values() if tags & set(s.tags))


def _check(world: WorldSpec, strategies: dict[str, StrategySpec]) -> None:
    try:
        world.gates  # noqa: B018 - parse at load; errors carry their path
    except ExpressionError as exc:
        raise ValueError(str(exc) if exc.path else f"stages: {exc}") from None
    for stage, profile in world.stages.items():
        try:
            days(profile.min_days)
        except ValueError as exc:
            raise ValueError(f"stages.{stage}.min_days: {exc}") from None
    try:
        world.score_expr  # noqa: B018 - parse at load
    except ValueError as exc:
        raise ValueError(f"selection.score: {exc}") from None
    if world.selection.correlation and world.selection.correlation.window not in (*world.windows, "full"):
        raise ValueError(
            f"selection.correlation.window: undefined window '{world.selection.correlation.window}'"
        )
    if world.allocation.vol_window not in (*world.windows, "full"):
        raise ValueError(f"allocation.vol_window: undefined window '{world.allocation.vol_window}'")
    alloc = world.allocation
    if alloc.full_investment and alloc.max_weight * world.selection.topk.total < 1 - 1e-12:
        raise ValueError(
            f"allocation.full_investment: max_weight {alloc.max_weight:g} x topk.total "
            f"{world.selection.topk.total} < 1: the budget can never be fully invested"
        )
    if world.strategies.ids is not None:
        unknown = sorted(set(world.strategies.ids) - set(strategies))
        if unknown:
            raise ValueError(f"strategies.ids: unknown strategies {unknown} (known: {sorted(strategies)})")
    members = world.members(strategies)
    if not members:
        raise ValueError("strategies: the selector matches no existing strategy")
    topk = world.selection.topk
    if topk.total > len(members):
        raise ValueError(
            f"selection.topk.total: {topk.total} exceeds the {len(members)} candidate strategies"
        )
    for side, k in topk.by_side.items():
        n = sum(1 for m in members if strategies[m].side == side)
        if k > n:
            raise ValueError(
                f"selection.topk.by_side.{side}: {k} exceeds the {n} candidate {side} strategies"
            )
    try:
        days(world.selection.hysteresis.min_dwell)
    except ValueError as exc:
        raise ValueError(f"selection.hysteresis.min_dwell: {exc}") from None


def load_world(path: Path, strategies: dict[str, StrategySpec]) -> WorldSpec:
    spec = load_yaml_model(path, WorldSpec, check=lambda w: _check(w, strategies))
    if spec.id != path.stem:
        raise ConfigError(f"{path}:1: id: '{spec.id}' must equal the file name '{path.stem}'")
    return spec


def load_worlds(directory: Path, strategies: dict[str, StrategySpec]) -> dict[str, WorldSpec]:
    """Every world file in `directory`, by id; all files' errors are reported together."""
    return load_directory(directory, lambda path: load_world(path, strategies))
