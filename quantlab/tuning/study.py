"""Optuna studies over a strategy's `tuning:` search space, in persistent (RDB) storage.

A study is named `<strategy>.v<version>.<hash>`: the hash covers everything that makes trials comparable
(the strategy without its tuning run settings, the search space, objective, folds, purge, embargo,
constraints, and the study window). Running the same study again loads it from storage and adds trials
(resume); a changed strategy, space or window starts a new study. Every trial of every study of a strategy
counts in its deflated Sharpe (`trial_stats`).

Trials are scored by `quantlab.tuning.objective` on walk-forward folds; constraints (`tuning.constraints`)
are Optuna constraints (`Trial.set_constraint`, honoured by the TPE sampler; infeasible trials rank last) or a
penalty on the objective. With `pruner: median` a trial reports its objective after each fold and stops
early when it falls below the median of earlier trials at that fold.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
import polars as pl

from quantlab.strategy_lab.spec import StrategySpec, Tuning, TuningParam, apply_params
from quantlab.tuning.folds import Fold, holding_horizon, walk_forward_folds
from quantlab.tuning.objective import TrialScore, TuningData, fold_returns, score_folds

#: trial states counted as tries in the deflated Sharpe (a failed trial produced no returns to select)
COUNTED_STATES = ("COMPLETE", "PRUNED")
_RUN_SETTINGS = {"n_trials", "timeout_s", "sampler", "pruner", "seed"}


@dataclass(frozen=True)
class StudySettings:
    """How one run of a study proceeds (defaults: the strategy's `tuning:` block)."""

    n_trials: int | None = None
    total_trials: int | None = None
    timeout_s: float | None = None
    sampler: str | None = None
    pruner: str | None = None
    workers: int = 1


def study_folds(spec: StrategySpec, sessions: Sequence[dt.date]) -> list[Fold]:
    """The walk-forward folds of the strategy's study over `sessions`."""
    t = _tuning(spec)
    purge = t.purge if t.purge is not None else holding_horizon(spec)
    return walk_forward_folds(sessions, t.folds, purge, t.embargo)


def study_name(spec: StrategySpec, window: tuple[dt.date, dt.date]) -> str:
    t = _tuning(spec)
    key = {
        "strategy": spec.model_dump(mode="json", exclude={"tuning", "description", "tags"}),
        "tuning": t.model_dump(mode="json", exclude=_RUN_SETTINGS),
        "window": [window[0].isoformat(), window[1].isoformat()],
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:8]
    return f"{spec.id}.v{spec.version}.{digest}"


def _tuning(spec: StrategySpec) -> Tuning:
    if spec.tuning is None:
        raise ValueError(f"strategy '{spec.id}' has no `tuning:` block")
    return spec.tuning


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    """TPE (it prefers trials satisfying their constraints, `Trial.set_constraint`) or random search."""
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"unknown sampler '{name}' (tpe | random)")


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    raise ValueError(f"unknown pruner '{name}' (none | median)")


def _suggest(trial: optuna.Trial, path: str, p: TuningParam) -> Any:
    if p.type == "int":
        return trial.suggest_int(path, int(p.low or 0), int(p.high or 0), log=p.log)
    if p.type == "float":
        return trial.suggest_float(path, float(p.low or 0), float(p.high or 0), log=p.log)
    choices = p.choices or []
    if all(c is None or isinstance(c, bool | int | float | str) for c in choices):
        return trial.suggest_categorical(path, choices)
    encoded = trial.suggest_categorical(path, [json.dumps(c, sort_keys=True) for c in choices])
    return json.loads(encoded)


def _violations(spec: StrategySpec, score: TrialScore) -> dict[str, float]:
    """Relative breaches `value / limit - 1` of the constraints (<= 0: satisfied; NaN counts as a breach)."""
    c = _tuning(spec).constraints
    if c is None:
        return {}
    out = {}
    for name, limit, value in (
        ("max_drawdown", c.max_drawdown, score.max_dd),
        ("max_turnover", c.max_turnover, score.turnover),
    ):
        if limit is not None:
            out[name] = 1.0 if math.isnan(value) else value / limit - 1.0
    return out


def make_objective(
    spec: StrategySpec, data: TuningData, folds: Sequence[Fold]
) -> Callable[[optuna.Trial], float]:
    """The Optuna objective: the trial's parameters applied to `spec`, scored out of sample on `folds`."""
    t = _tuning(spec)
    constrain = t.constraints is not None and t.constraints.handling == "constraint"

    def objective(trial: optuna.Trial) -> float:
        values = {path: _suggest(trial, path, p) for path, p in t.params.items()}
        try:
            trial_spec = apply_params(spec, values)
        except ValueError as exc:  # each bound is valid (checked at load), not every combination
            trial.set_user_attr("error", str(exc))
            return float("nan")  # Optuna records the trial as FAIL: not a tested strategy
        returns = []
        for fold in folds:
            returns.append(fold_returns(trial_spec, data, fold))
            if t.pruner != "none":
                partial = score_folds(returns, folds[: len(returns)], t.objective)
                if not math.isnan(partial.objective):
                    trial.report(partial.objective, fold.index)
                    if trial.should_prune():
                        _record(trial, partial, _violations(spec, partial), constrain)
                        raise optuna.TrialPruned()
        score = score_folds(returns, folds, t.objective)
        violations = _violations(spec, score)
        _record(trial, score, violations, constrain)
        value = score.objective
        if violations and t.constraints is not None and t.constraints.handling == "penalty":
            value -= t.constraints.penalty * sum(max(0.0, v) for v in violations.values())
        return value

    return objective


def _record(trial: optuna.Trial, score: TrialScore, violations: dict[str, float], constrain: bool) -> None:
    """Store the trial's scores as ONE user attribute (each attribute is a storage write) and, in
    constraint mode, its constraint values."""

    def num(x: float) -> float | None:
        return None if math.isnan(x) else float(x)

    oos = {
        "sharpe": num(score.sharpe),
        "sr_daily": num(score.sr_daily),
        "max_dd": num(score.max_dd),
        "turnover": num(score.turnover),
        "oos_days": score.days,
        "folds": score.fold_dicts(),
    }
    if violations:
        oos["constraints"] = violations
        if constrain:
            for name, v in violations.items():
                trial.set_constraint(name, v)
    trial.set_user_attr("oos", oos)


def load_study(spec: StrategySpec, storage: str | optuna.storages.BaseStorage, name: str) -> optuna.Study:
    """The study `name` in `storage`, created if absent (maximize), with the strategy's sampler/pruner."""
    t = _tuning(spec)
    return optuna.create_study(
        study_name=name,
        storage=storage,
        direction="maximize",
        load_if_exists=True,
        sampler=make_sampler(t.sampler, t.seed),
        pruner=make_pruner(t.pruner),
    )


def run_study(
    spec: StrategySpec,
    data: TuningData,
    sessions: Sequence[dt.date],
    storage: str | optuna.storages.BaseStorage,
    settings: StudySettings = StudySettings(),
    on_trial: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None = None,
    on_start: Callable[[optuna.Study, int], None] | None = None,
) -> optuna.Study:
    """Create or resume the strategy's study over `sessions` and add trials.

    `settings.n_trials` trials are added (default `tuning.n_trials`), or, with `total_trials`, as many as the
    study lacks to hold that many finished trials; `timeout_s` stops earlier; `workers` threads run trials in
    parallel on the shared storage. `on_start(study, n)` is called before the `n` trials are added,
    `on_trial` after every trial (progress logging).
    """
    t = _tuning(spec)
    overrides = {k: v for k, v in (("sampler", settings.sampler), ("pruner", settings.pruner)) if v}
    if overrides:
        spec = spec.model_copy(update={"tuning": t.model_copy(update=overrides)})
        t = _tuning(spec)
    window = (sessions[0], sessions[-1])
    folds = study_folds(spec, sessions)
    study = load_study(spec, storage, study_name(spec, window))
    study.set_user_attr("strategy", spec.id)
    study.set_user_attr("strategy_version", spec.version)
    study.set_user_attr("window", [window[0].isoformat(), window[1].isoformat()])
    study.set_user_attr("folds", [[f.start.isoformat(), f.end.isoformat()] for f in folds])
    n = settings.n_trials if settings.n_trials is not None else t.n_trials
    if settings.total_trials is not None:
        done = sum(tr.state.is_finished() for tr in study.get_trials(deepcopy=False))
        n = max(0, settings.total_trials - done)
    if on_start is not None:
        on_start(study, n)
    if n:
        study.optimize(
            make_objective(spec, data, folds),
            n_trials=n,
            timeout=settings.timeout_s if settings.timeout_s is not None else t.timeout_s,
            n_jobs=settings.workers,
            callbacks=[on_trial] if on_trial else None,
            gc_after_trial=False,
        )
    return study


def trials_frame(study: optuna.Study) -> pl.DataFrame:
    """The study's trials as `tuning_trials` rows."""
    attrs = study.user_attrs
    window = [dt.date.fromisoformat(d) for d in attrs["window"]]
    rows = []
    for tr in study.get_trials(deepcopy=False):
        u = tr.user_attrs.get("oos", {})
        cons = u.get("constraints")
        rows.append(
            {
                "study": study.study_name,
                "strategy": attrs["strategy"],
                "strategy_version": int(attrs["strategy_version"]),
                "trial": tr.number,
                "state": tr.state.name,
                "value": tr.value if tr.value is not None and math.isfinite(tr.value) else None,
                "sharpe": u.get("sharpe"),
                "sr_daily": u.get("sr_daily"),
                "max_dd": u.get("max_dd"),
                "turnover": u.get("turnover"),
                "oos_days": u.get("oos_days"),
                "feasible": None if cons is None else all(c <= 0 for c in cons.values()),
                "params": json.dumps(tr.params, sort_keys=True),
                "folds": json.dumps(u.get("folds", [])),
                "window_start": window[0],
                "window_end": window[1],
                "started_at": tr.datetime_start.replace(tzinfo=None) if tr.datetime_start else None,
                "duration_s": tr.duration.total_seconds() if tr.duration else None,
            }
        )
    schema = {
        "study": pl.String,
        "strategy": pl.String,
        "strategy_version": pl.Int64,
        "trial": pl.Int64,
        "state": pl.String,
        "value": pl.Float64,
        "sharpe": pl.Float64,
        "sr_daily": pl.Float64,
        "max_dd": pl.Float64,
        "turnover": pl.Float64,
        "oos_days": pl.Int64,
        "feasible": pl.Boolean,
        "params": pl.String,
        "folds": pl.String,
        "window_start": pl.Date,
        "window_end": pl.Date,
        "started_at": pl.Datetime("us"),
        "duration_s": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema)


def leaderboard(trials: pl.DataFrame, top: int = 10) -> pl.DataFrame:
    """The best completed trials: feasible first, then by objective (parameters as columns)."""
    done = trials.filter((pl.col("state") == "COMPLETE") & pl.col("value").is_not_null())
    done = done.sort(
        pl.col("feasible").fill_null(True), "value", "trial", descending=[True, True, False]
    ).head(top)
    params = pl.DataFrame([json.loads(p) for p in done.get_column("params")]) if done.height else None
    out = done.select("trial", "value", "sharpe", "max_dd", "turnover", "feasible")
    if params is not None and params.width:
        out = pl.concat([out, params.select(pl.all().cast(pl.String))], how="horizontal")
    return out


def trial_stats(trials: pl.DataFrame) -> pl.DataFrame:
    """Per strategy, over all its studies: `n_trials` (trials COMPLETE or PRUNED), `sr_variance` (sample
    variance of the COMPLETE trials' per-period Sharpe ratios) and `best_sharpe` (annualized)."""
    counted = trials.filter(pl.col("state").is_in(COUNTED_STATES))
    sr = pl.when(pl.col("state") == "COMPLETE").then(pl.col("sr_daily"))
    return (
        counted.group_by("strategy")
        .agg(
            pl.len().alias("n_trials"),
            sr.drop_nulls().var(ddof=1).alias("sr_variance"),
            pl.when(pl.col("state") == "COMPLETE").then(pl.col("sharpe")).max().alias("best_sharpe"),
            pl.col("study").n_unique().alias("studies"),
        )
        .sort("strategy")
    )


def dsr_inputs(stats: pl.DataFrame) -> dict[str, tuple[int, float]]:
    """strategy -> (n_trials, sr_variance) for `quantlab.backtest.kpis.asof_kpis`: strategies with at
    least two counted trials and a defined variance (one trial is no selection: DSR stays PSR)."""
    return {
        r["strategy"]: (int(r["n_trials"]), float(r["sr_variance"]))
        for r in stats.iter_rows(named=True)
        if r["n_trials"] >= 2 and r["sr_variance"] is not None and np.isfinite(r["sr_variance"])
    }


def param_importances(study: optuna.Study, seed: int = 0) -> dict[str, float]:
    """fANOVA importances of the parameters over the completed trials ({} when they cannot be computed,
    e.g. fewer than two completed trials or a parameter never varied)."""
    done = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    if len(done) < 2:
        return {}
    try:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
        return dict(optuna.importance.get_param_importances(study, evaluator=evaluator))
    except (RuntimeError, ValueError):
        return {}
