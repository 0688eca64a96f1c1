"""Strategy files (`strategies/*.yaml`) parsed into strict pydantic models.

A strategy is configuration: a universe, a signal, portfolio construction, a rebalance schedule, execution
and costs, and optional per-strategy risk limits for the supervisor.

Two kinds of signal:

* `kind: rank` (the default): `score` is a safe expression over feature names (see `quantlab.expressions`).
* `kind: model`: a scikit-learn estimator trained walk-forward (see `quantlab.strategy_lab.model`)::

      signal:
        kind: model
        estimator: gradient_boosting        # logistic_regression | ridge | random_forest | gradient_boosting
        params: {max_depth: 3, learning_rate: 0.05}   # the estimator's own parameters (checked at load)
        features: momentum                  # a feature-set id (preset or feature_sets/*.yaml) or a list
        label: fwd_excess_5                 # from quantlab.features.labels.LABELS
        train_window: 504                   # sessions of training dates before the fit date
        refit_every: 21                     # sessions between refits (fit dates: session_index % 21 == 0)
        embargo: 5                          # sessions dropped after the purge
        seed: 7
        preprocess: xs_zscore               # per-date cross-sectional standardization (or xs_rank)
        min_train_rows: 200                 # fewer usable training rows: no model, no score

  The estimator is a regressor, or its classifier variant when the label is binary (`fwd_dir_*`; the score
  is then the probability of class 1). `logistic_regression` is a classifier only and needs a binary label.
  `gradient_boosting` is scikit-learn's HistGradientBoosting (histogram-binned: O(rows) per iteration and
  native threading, 50-100x faster than GradientBoosting on the 50k-row windows of a 100-symbol universe,
  which keeps a monthly walk-forward over years within seconds); quantlab turns its internal early stopping
  off by default (it would hold out a random, not a time-ordered, split).

  Leakage rule enforced at load: `train_window > horizon(label) + embargo`. The purge itself is by
  construction, row by row (a training row is used only if its label's `asof_date` <= the fit date, then
  `embargo` more sessions are dropped, see `quantlab.strategy_lab.model.training_window`); the load check
  rejects configurations where purge + embargo would leave no training session at all.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from quantlab.config import ConfigError, Strict, load_directory, load_yaml_model
from quantlab.expressions import Expr, parse
from quantlab.features.labels import LABEL_NAMES, LABELS
from quantlab.features.library import FEATURE_NAMES
from quantlab.features.sets import PRESETS, SET_ID, FeatureSet, load_feature_sets
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


#: Labels whose values are 0/1 (classifiers need one of them).
BINARY_LABELS: frozenset[str] = frozenset(n for n in LABEL_NAMES if n.startswith("fwd_dir_"))


@dataclass(frozen=True)
class EstimatorDef:
    """A whitelisted estimator: its regressor and classifier classes ("module:Class"), quantlab's defaults
    (overridable in `params`), and whether it takes `random_state` (set from `signal.seed`)."""

    name: str
    regressor: str | None
    classifier: str | None
    defaults: Mapping[str, Any] = field(default_factory=dict)
    seeded: bool = True

    def cls(self, binary: bool) -> type:
        """The estimator class for a binary (classifier if there is one) or a continuous label."""
        path = (self.classifier or self.regressor) if binary else self.regressor
        if path is None:
            raise ValueError(f"'{self.name}' is a classifier: it needs a binary label")
        module, _, name = path.partition(":")
        return getattr(importlib.import_module(module), name)


ESTIMATORS: dict[str, EstimatorDef] = {
    e.name: e
    for e in (
        EstimatorDef("logistic_regression", None, "sklearn.linear_model:LogisticRegression"),
        EstimatorDef("ridge", "sklearn.linear_model:Ridge", None),
        EstimatorDef(
            "random_forest",
            "sklearn.ensemble:RandomForestRegressor",
            "sklearn.ensemble:RandomForestClassifier",
            {"n_estimators": 100, "max_depth": 8, "min_samples_leaf": 20},
        ),
        EstimatorDef(
            "gradient_boosting",
            "sklearn.ensemble:HistGradientBoostingRegressor",
            "sklearn.ensemble:HistGradientBoostingClassifier",
            {"early_stopping": False},
        ),
    )
}
RESERVED_PARAMS = {"random_state": "set by `signal.seed`"}


def _invalid(title: str, errors: list[tuple[tuple[str | int, ...], str, Any]]) -> ValidationError:
    """A ValidationError with one error per (loc, message, input), so each names its own field."""
    return ValidationError.from_exception_data(
        title,
        [
            {
                "type": PydanticCustomError("invalid", msg.replace("{", "{{").replace("}", "}}")),
                "loc": loc,
                "input": v,
            }
            for loc, msg, v in errors
        ],
    )


class ModelSignal(Strict):
    """A scikit-learn model trained walk-forward; see the module docstring and `quantlab.strategy_lab.model`."""

    kind: Literal["model"]
    estimator: Literal["logistic_regression", "ridge", "random_forest", "gradient_boosting"]
    params: dict[str, Any] = Field(default_factory=dict, description="The estimator's own parameters.")
    features: str | list[str] = Field(description="A feature-set id or a list of library feature names.")
    label: str = Field(description="A label of quantlab.features.labels.LABELS.")
    train_window: int = Field(default=504, ge=21, le=5040, description="Sessions of training dates.")
    refit_every: int = Field(default=21, ge=1, le=252, description="Sessions between refits.")
    embargo: int = Field(default=5, ge=0, le=252, description="Sessions dropped after the purge.")
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    preprocess: Literal["xs_zscore", "xs_rank"] = "xs_zscore"
    min_train_rows: int = Field(default=200, ge=10, le=10_000_000)

    @field_validator("features")
    @classmethod
    def _features(cls, v: str | list[str]) -> str | list[str]:
        if isinstance(v, str):
            if not re.match(SET_ID, v):
                raise ValueError(f"'{v}' is not a feature-set id (pattern {SET_ID})")
            return v
        if not v:
            raise ValueError("give a feature-set id or at least one feature name")
        errors = [
            ((i,), f"unknown feature '{n}'; the library has {list(FEATURE_NAMES)}", n)
            for i, n in enumerate(v)
            if n not in FEATURE_NAMES
        ]
        errors += [((i,), f"feature '{n}' is listed twice", n) for i, n in enumerate(v) if n in v[:i]]
        if errors:
            raise _invalid("features", errors)
        return v

    @model_validator(mode="after")
    def _semantics(self) -> ModelSignal:
        errors: list[tuple[tuple[str | int, ...], str, Any]] = []
        label = LABELS.get(self.label)
        est = ESTIMATORS[self.estimator]
        binary = self.label in BINARY_LABELS
        if label is None:
            errors.append(
                (("label",), f"unknown label '{self.label}'; known: {list(LABEL_NAMES)}", self.label)
            )
        if label is not None and not binary and est.regressor is None:
            errors.append(
                (
                    ("label",),
                    f"'{self.estimator}' is a classifier and needs a binary label "
                    f"({sorted(BINARY_LABELS)}); '{self.label}' is continuous",
                    self.label,
                )
            )
        if label is not None and self.train_window <= label.horizon + self.embargo:
            errors.append(
                (
                    ("train_window",),
                    f"{self.train_window} sessions leave nothing to train on: the purge of the label horizon "
                    f"({label.horizon} sessions of '{self.label}') plus the embargo ({self.embargo}) must be "
                    "shorter than the training window, or training labels would reach into the test window",
                    self.train_window,
                )
            )
        errors += _param_errors(est, binary, self.params)
        if errors:
            raise _invalid("signal", errors)
        return self

    @property
    def horizon(self) -> int:
        return LABELS[self.label].horizon

    @property
    def binary(self) -> bool:
        """True when the label is 0/1 (the estimator is then the classifier variant, if it has one)."""
        return self.label in BINARY_LABELS

    @property
    def is_classifier(self) -> bool:
        return self.binary and ESTIMATORS[self.estimator].classifier is not None

    def estimator_class(self) -> type:
        return ESTIMATORS[self.estimator].cls(self.binary)

    def estimator_params(self) -> dict[str, Any]:
        """quantlab's defaults, the user's params, and `random_state = seed` where the estimator takes one."""
        est = ESTIMATORS[self.estimator]
        seeded = {"random_state": self.seed} if est.seeded else {}
        return {**est.defaults, **self.params, **seeded}

    @property
    def params_json(self) -> str:
        """The user's params as canonical JSON (sorted keys): what the models table records."""
        return json.dumps(self.params, sort_keys=True, separators=(",", ":"))


def _param_errors(est: EstimatorDef, binary: bool, params: Mapping[str, Any]) -> list:
    """Unknown, reserved or invalid values of the estimator's own parameters, each at `params.<name>`."""
    try:
        cls = est.cls(binary and est.classifier is not None)
    except ValueError:
        cls = est.cls(True)
    known = set(cls().get_params()) - set(RESERVED_PARAMS)
    errors = []
    for name, value in params.items():
        if name in RESERVED_PARAMS:
            errors.append((("params", name), f"not allowed here: {RESERVED_PARAMS[name]}", value))
        elif name not in known:
            errors.append(
                (
                    ("params", name),
                    f"unknown parameter of {cls.__name__} ('{est.name}'); known: {sorted(known)}",
                    value,
                )
            )
        else:
            try:
                json.dumps(value)
            except (TypeError, ValueError):
                errors.append(
                    (("params", name), "must be a plain YAML value (number, string, bool, list)", value)
                )
                continue
            try:
                check = getattr(cls(**{name: value}), "_validate_params", None)
                if check is not None:
                    check()
            except (TypeError, ValueError) as exc:
                errors.append((("params", name), str(exc), value))
    return errors


Signal = RankSignal | ModelSignal


class Leg(Strict):
    """One side of the book: the `top` N names, or the top `quantile` of the names scored that date."""

    top: int = Field(default=0, ge=0, description="Number of names in this leg (0 disables it).")
    quantile: float | None = Field(
        default=None,
        gt=0,
        le=0.5,
        description="Fraction of the scored names (at least one name); instead of top.",
    )

    @model_validator(mode="after")
    def _one(self) -> Leg:
        if self.quantile is not None and self.top:
            raise ValueError("give either `top` or `quantile`, not both")
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.top) or self.quantile is not None

    def describe(self) -> str:
        return f"top {self.quantile:.0%}" if self.quantile is not None else f"top {self.top}"


class Portfolio(Strict):
    long: Leg = Leg(top=1)
    short: Leg = Leg(top=0)
    weighting: Literal["equal", "score", "inverse_vol"] = "equal"
    max_weight: float = Field(default=1.0, gt=0, le=1.0, description="Cap on |weight| per name.")
    gross: float = Field(default=1.0, gt=0, le=4.0, description="Gross exposure (sum of |weights|).")
    net: float | None = Field(
        default=None,
        description="Net exposure (long - short) of a long/short book: the long leg gets (gross + net) / 2, "
        "the short leg (gross - net) / 2; default 0 (dollar neutral). A one-sided book's net is +-gross.",
    )

    @model_validator(mode="after")
    def _legs(self) -> Portfolio:
        if not self.long.enabled and not self.short.enabled:
            raise ValueError("at least one leg is needed: long.top/quantile or short.top/quantile")
        if self.net is not None:
            if abs(self.net) > self.gross:
                raise ValueError(f"net {self.net} exceeds gross {self.gross} in absolute value")
            if self.side != "long_short" and abs(self.net) != self.gross:
                raise ValueError(
                    f"a {self.side}-only book has net {'+' if self.side == 'long' else '-'}gross"
                )
        return self

    @property
    def side(self) -> Literal["long", "short", "long_short"]:
        if self.long.enabled and self.short.enabled:
            return "long_short"
        return "long" if self.long.enabled else "short"

    @property
    def leg_gross(self) -> tuple[float, float]:
        """(long, short) gross exposure of the legs."""
        if self.side == "long_short":
            net = self.net or 0.0
            return (self.gross + net) / 2, (self.gross - net) / 2
        return (self.gross, 0.0) if self.side == "long" else (0.0, self.gross)


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


class TuningParam(Strict):
    """One dimension of the search space: `{type: int, low, high}`, `{type: float, low, high, log}` or
    `{type: choice, choices: [...]}`."""

    type: Literal["int", "float", "choice"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: list[Any] | None = Field(default=None, min_length=2)

    @model_validator(mode="after")
    def _shape(self) -> TuningParam:
        if self.type == "choice":
            if self.choices is None or self.low is not None or self.high is not None or self.log:
                raise ValueError("a `choice` parameter takes `choices: [...]` (two or more) and nothing else")
            return self
        if self.choices is not None or self.low is None or self.high is None:
            raise ValueError(f"an `{self.type}` parameter takes `low` and `high`")
        if not self.low < self.high:
            raise ValueError(f"low {self.low} must be below high {self.high}")
        if self.type == "int" and (self.low != int(self.low) or self.high != int(self.high)):
            raise ValueError("an `int` parameter needs integer bounds")
        if self.log and self.low <= 0:
            raise ValueError("`log` needs low > 0")
        return self

    @property
    def candidates(self) -> list[Any]:
        """The values that must each give a valid strategy: the bounds, or every choice."""
        if self.type == "choice":
            return list(self.choices or [])
        cast = int if self.type == "int" else float
        return [cast(self.low), cast(self.high)]


class TuningConstraints(Strict):
    """Limits on a trial's out-of-sample track: Optuna constraints (`handling: constraint`, the TPE sampler
    then prefers feasible trials and the leaderboard ranks infeasible ones last) or a penalty subtracted from
    the objective (`handling: penalty`: `penalty * sum(max(0, value / limit - 1))`)."""

    max_drawdown: float | None = Field(default=None, gt=0, le=1, description="Worst fold max drawdown.")
    max_turnover: float | None = Field(default=None, gt=0, description="Mean daily turnover.")
    handling: Literal["constraint", "penalty"] = "constraint"
    penalty: float = Field(default=1.0, gt=0, description="Objective units per 100% breach (penalty mode).")

    @model_validator(mode="after")
    def _some(self) -> TuningConstraints:
        if self.max_drawdown is None and self.max_turnover is None:
            raise ValueError("give `max_drawdown` and/or `max_turnover`")
        return self


class Tuning(Strict):
    """The search space of an Optuna study over this strategy and how trials are scored (`quantlab.tuning`).

    `folds` walk-forward test segments of the study window; `purge` sessions (default: the longest
    `rebalance.every` + `execution.lag` of the search space, so no position decided in one fold earns
    returns in the next) plus `embargo` sessions are left out at the start of every fold but the first.
    """

    params: dict[str, TuningParam] = Field(min_length=1, description="Dotted path in this file -> range.")
    objective: Literal["sharpe", "sortino", "calmar"] = "sharpe"
    n_trials: int = Field(default=100, ge=1, le=100_000)
    timeout_s: float | None = Field(default=None, gt=0)
    sampler: Literal["tpe", "random"] = "tpe"
    pruner: Literal["none", "median"] = "none"
    folds: int = Field(default=5, ge=2, le=20)
    purge: int | None = Field(default=None, ge=0, le=252, description="Sessions; default: holding horizon.")
    embargo: int = Field(default=0, ge=0, le=252, description="Extra sessions left out after the purge.")
    constraints: TuningConstraints | None = None
    seed: int = 7


def apply_params(spec: StrategySpec, values: Mapping[str, Any]) -> StrategySpec:
    """A copy of `spec` with each dotted path set to its value, validated (ValueError names the path)."""
    doc = spec.model_dump(exclude={"tuning"})
    for path, value in values.items():
        node = doc
        *parents, leaf = path.split(".")
        for key in parents:
            if not isinstance(node.get(key), dict):
                raise ValueError(f"tuning.params.{path}: '{key}' is not a section of the strategy")
            node = node[key]
        if leaf not in node and parents[-1:] != ["params"]:
            raise ValueError(f"tuning.params.{path}: no field '{leaf}' there (fields: {sorted(node)})")
        node[leaf] = value
    try:
        return StrategySpec.model_validate({**doc, "tuning": spec.tuning})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise ValueError(f"tuning.params: {where}: {first['msg']}") from None


class StrategySpec(Strict):
    id: str = Field(pattern=ID_PATTERN)
    version: int = Field(default=1, ge=1)
    description: str = ""
    tags: list[str] = []
    universe: Universe
    signal: Signal
    portfolio: Portfolio = Portfolio()
    rebalance: Rebalance = Rebalance()
    execution: Execution = Execution()
    costs: Costs = Costs()
    cash: Cash = Cash()
    risk: RiskLimits = RiskLimits()
    tuning: Tuning | None = None

    @field_validator("signal", mode="wrap")
    @classmethod
    def _signal(cls, value: Any, handler: Any) -> Signal:
        """Dispatch on `kind` (default `rank`), so errors name the signal's own fields (no union branches)."""
        if isinstance(value, Mapping):
            kind = value.get("kind", "rank")
            if kind not in ("rank", "model"):
                raise _invalid("signal", [(("kind",), "Input should be 'rank' or 'model'", kind)])
            value = (ModelSignal if kind == "model" else RankSignal).model_validate(dict(value))
        return handler(value)

    @property
    def is_model(self) -> bool:
        return isinstance(self.signal, ModelSignal)

    @cached_property
    def score_expr(self) -> Expr:
        """The rank signal's parsed score. A model strategy has no expression (its score is the model's
        prediction, `quantlab.strategy_lab.model`): it gets the constant `0`, which reads no feature."""
        if isinstance(self.signal, ModelSignal):
            return parse("0", names=FEATURE_NAMES, boolean=False)
        return parse(self.signal.score, names=FEATURE_NAMES, boolean=False)

    @property
    def side(self) -> str:
        return self.portfolio.side


def resolve_feature_set(signal: ModelSignal, sets: Mapping[str, FeatureSet]) -> FeatureSet:
    """The feature set a model signal names (an id among `sets`, e.g. `Project.feature_sets`), or an
    `inline` set for a list of library names. Raises ValueError for an unknown id."""
    if isinstance(signal.features, list):
        return FeatureSet(id="inline", description="inline feature list", features=list(signal.features))
    if signal.features not in sets:
        raise ValueError(f"unknown feature set '{signal.features}'; known: {sorted(sets)}")
    return sets[signal.features]


def _check(spec: StrategySpec, sets: Mapping[str, FeatureSet] | None, path: Path) -> None:
    if spec.tuning is not None:  # every bound / choice must give a valid strategy
        for name, param in spec.tuning.params.items():
            for value in param.candidates:
                apply_params(spec, {name: value})
    if isinstance(spec.signal, ModelSignal):
        if isinstance(spec.signal.features, str) and spec.signal.features not in PRESETS:
            # the project's sets live next to strategies/ (Project.feature_sets: <root>/feature_sets)
            sets = sets if sets is not None else load_feature_sets(path.parent.parent / "feature_sets")
            try:
                resolve_feature_set(spec.signal, sets)
            except ValueError as exc:
                raise ValueError(f"signal.features: {exc}") from None
        return
    try:
        spec.score_expr  # noqa: B018 - parse now so errors surface at load
    except ValueError as exc:
        raise ValueError(f"signal.score: {exc}") from None


def load_strategy(path: Path, feature_sets: Mapping[str, FeatureSet] | None = None) -> StrategySpec:
    """Parse and validate one strategy file (ConfigError names file, line, field and reason).

    A model signal's feature-set id is resolved against `feature_sets` (default: the presets plus
    `<project>/feature_sets/*.yaml`, the project being the parent of the strategy's directory).
    """
    spec = load_yaml_model(path, StrategySpec, check=lambda s: _check(s, feature_sets, path))
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
