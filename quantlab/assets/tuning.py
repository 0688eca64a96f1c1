"""`tuning_studies`: one Optuna study per strategy with a `tuning:` block (one partition per strategy), and
the trial counts the `kpis` asset reads back for the deflated Sharpe.

Not part of the daily chain: a study is launched by hand (UI: materialize a partition of `tuning_studies`,
the `tuning` job, or `quantlab tune run`). It reads the features, labels and bars already in the warehouse,
runs the study (`quantlab.tuning.study`) in the Optuna storage of the `tuning_storage` resource, then
rewrites the study's rows of `tuning_trials` and writes `tuning_report.md` to the run's artifacts.
"""

import datetime as dt
import math
import threading
from pathlib import Path

import dagster as dg
import optuna
import polars as pl
from pydantic import Field

from quantlab.assets.common import POOL, StageRun, md_table
from quantlab.calendar import shift_sessions
from quantlab.project import Project
from quantlab.resources import ProjectFiles, SchemaViolation, Warehouse
from quantlab.resources.tuning_storage import TuningStorage, display_url
from quantlab.strategy_lab.model import ModelCache, history_start
from quantlab.strategy_lab.spec import ModelSignal, StrategySpec, resolve_feature_set
from quantlab.tuning.folds import holding_horizon
from quantlab.tuning.objective import BAR_COLUMNS, TuningData
from quantlab.tuning.report import history_png, multiple_testing, png_file, tuning_report, write_report
from quantlab.tuning.study import (
    StudySettings,
    dsr_inputs,
    leaderboard,
    param_importances,
    run_study,
    trial_stats,
    trials_frame,
)

ASSET = "tuning_studies"
TUNING_JOB = "tuning"


class TuningRun(dg.Config):
    """Run settings of one study run; unset fields come from the strategy's `tuning:` block."""

    n_trials: int | None = Field(default=None, ge=1, description="Trials to add (default tuning.n_trials).")
    total_trials: int | None = Field(
        default=None, ge=1, description="Instead: add trials until the study holds this many (idempotent)."
    )
    timeout_s: float | None = Field(default=None, gt=0, description="Stop adding trials after this long.")
    sampler: str | None = Field(default=None, description="tpe | random (default tuning.sampler).")
    pruner: str | None = Field(default=None, description="none | median (default tuning.pruner).")
    start: str | None = Field(default=None, description="First session of the study window (ISO date).")
    end: str | None = Field(default=None, description="Last session of the study window (default: latest).")


def tuning_trials_by_strategy(warehouse: Warehouse) -> dict[str, tuple[int, float]]:
    """strategy -> (trials, variance of their per-period Sharpe) over all its studies in `tuning_trials`."""
    if not warehouse.has_table("tuning_trials"):
        return {}
    return dsr_inputs(trial_stats(warehouse.read_table("tuning_trials")))


def load_tuning_data(
    warehouse: Warehouse, project: Project, spec: StrategySpec, start: dt.date | None, end: dt.date | None
) -> tuple[TuningData, list[dt.date]]:
    """The features, bars (and labels of a model strategy) a study needs, and the window's sessions."""
    bounds = warehouse.read("SELECT min(date) AS lo, max(date) AS hi FROM features").row(0)
    if bounds[0] is None:
        raise dg.Failure("no features in the warehouse: materialize the chain (ohlcv, features) first")
    start, end = max(start or bounds[0], bounds[0]), min(end or bounds[1], bounds[1])
    first = shift_sessions(start, -(holding_horizon(spec) + 1))
    if isinstance(spec.signal, ModelSignal):
        first = history_start(spec.signal, first)
    features = warehouse.read_table("features", first, end)
    cap = spec.execution.adv_window + 1 if spec.execution.participation_cap is not None else 0
    bars = warehouse.read_table("ohlcv", shift_sessions(first, -cap), end, columns=BAR_COLUMNS)
    labels, fset, cache = None, None, ModelCache(None)
    if isinstance(spec.signal, ModelSignal):
        try:
            fset = resolve_feature_set(spec.signal, project.feature_sets)
        except ValueError as exc:
            raise dg.Failure(f"model strategy: {exc}") from None
        labels = warehouse.read_table("labels", first, end, where={"label": [spec.signal.label]})
        db = str(warehouse.database)
        cache = ModelCache(None if db.startswith(":") else Path(db).resolve().parent / "models")
    days = features.filter(pl.col("date").is_between(start, end)).get_column("date").unique().sort().to_list()
    if len(days) < 2:
        raise dg.Failure(f"the study window {start} .. {end} holds {len(days)} session(s) with features")
    return TuningData(features, bars, labels, fset, cache), days


def _date(text: str | None) -> dt.date | None:
    return dt.date.fromisoformat(text) if text else None


class _Progress:
    """Optuna callback: one log line per trial, and an asset observation (plotted in the UI) now and then."""

    def __init__(self, context: dg.AssetExecutionContext, strategy: str):
        self.context, self.strategy = context, strategy
        self.planned = self.done = 0
        self.every = 1
        self.lock = threading.Lock()

    def start(self, study: optuna.Study, n: int) -> None:
        self.planned, self.every = n, max(1, n // 10)
        held = len(study.get_trials(deepcopy=False))
        self.context.log.info(f"{study.study_name}: {held} trials stored, adding {n}")

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        with self.lock:
            self.done += 1
            try:
                best = f"best {study.best_value:.3f} (trial {study.best_trial.number})"
            except ValueError:
                best = "no completed trial yet"
            value = "-" if trial.value is None else f"{trial.value:.3f}"
            self.context.log.info(
                f"{study.study_name}: trial {trial.number} ({self.done}/{self.planned}) {trial.state.name} "
                f"objective {value} {trial.params}; {best}"
            )
            if self.done % self.every == 0 or self.done == self.planned:
                meta = {"trials_done": self.done, "trials_planned": self.planned}
                if "best" in best:
                    meta["best_value"] = float(study.best_value)
                self.context.log_event(
                    dg.AssetObservation(asset_key=ASSET, partition=self.strategy, metadata=meta)
                )


def run_tuning(
    warehouse: Warehouse,
    project: Project,
    strategy: str,
    storage: TuningStorage,
    config: TuningRun,
    run_dir: Path | None = None,
    progress: _Progress | None = None,
) -> StageRun:
    """Run (create or resume) the study of `strategy`, store its trials and write its report."""
    spec = project.strategies.get(strategy)
    if spec is None or spec.tuning is None:
        raise dg.Failure(f"strategy '{strategy}' has no `tuning:` block (or no longer exists)")
    data, days = load_tuning_data(warehouse, project, spec, _date(config.start), _date(config.end))
    url = storage.resolve(str(warehouse.database))
    settings = StudySettings(
        n_trials=config.n_trials,
        total_trials=config.total_trials,
        timeout_s=config.timeout_s,
        sampler=config.sampler,
        pruner=config.pruner,
        workers=storage.workers,
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # progress goes to the Dagster log instead
    try:
        study = run_study(
            spec,
            data,
            days,
            storage.open(str(warehouse.database)),
            settings,
            on_trial=progress,
            on_start=progress.start if progress else None,
        )
    except ValueError as exc:  # too few sessions for the folds, an invalid parameter combination
        raise dg.Failure(f"tuning '{strategy}': {exc}") from None
    trials = trials_frame(study)
    try:
        warehouse.replace_all("tuning_trials", trials, scope={"study": study.study_name})
    except SchemaViolation as exc:
        raise dg.Failure(
            description=str(exc), metadata={"failure_cases": dg.MetadataValue.md(md_table(exc.failure_cases))}
        ) from None
    all_stats = trial_stats(warehouse.read_table("tuning_trials", where={"strategy": strategy}))
    stats = all_stats.row(0, named=True) if all_stats.height else {"strategy": strategy, "n_trials": 0}
    top = leaderboard(trials)
    mt = multiple_testing(int(stats.get("n_trials") or 0), stats.get("sr_variance"))
    shown_url = display_url(url)
    meta: dict = {
        "study": study.study_name,
        "storage": shown_url,
        "window": f"{days[0]} .. {days[-1]}",
        "trials": trials.height,
        "trials_complete": int((trials.get_column("state") == "COMPLETE").sum()),
        "trials_counted_for_dsr": int(stats.get("n_trials") or 0),
        "trial_sr_variance": _finite(stats.get("sr_variance")),
        "expected_max_sharpe": mt["expected_max_sharpe"],
        "leaderboard": dg.MetadataValue.md(md_table(top, max_rows=10)),
    }
    if top.height:
        meta["best_value"] = float(top.item(0, "value"))
        meta["best_trial"] = int(top.item(0, "trial"))
    if run_dir is not None:
        png = history_png(trials, f"{study.study_name}: optimization history")
        importances = param_importances(study, seed=spec.tuning.seed)
        text = tuning_report(
            study.study_name, shown_url, trials, stats, importances, png_file(study.study_name), top
        )
        meta["tuning_report"] = dg.MetadataValue.path(
            str(write_report(run_dir / "reports", study.study_name, text, png))
        )
        if importances:
            meta["param_importances"] = dg.MetadataValue.json(
                {k: round(v, 4) for k, v in importances.items()}
            )
    return StageRun(metadata=meta)


def _finite(v: float | None) -> float:
    return float(v) if v is not None and math.isfinite(v) else float("nan")


def tuning_assets(project: Project) -> list[dg.AssetsDefinition]:
    """`tuning_studies`, partitioned by the strategies with a `tuning:` block (none: no asset).

    One partition per strategy: each study is launched, re-run (resumed) and inspected on its own, the UI
    keeps each strategy's materialization history and metadata apart, and a new tunable strategy is a new
    partition after a reload, as worlds are new assets.
    """
    tunable = sorted(sid for sid, spec in project.strategies.items() if spec.tuning is not None)
    if not tunable:
        return []

    @dg.asset(
        name=ASSET,
        partitions_def=dg.StaticPartitionsDefinition(tunable),
        group_name="tuning",
        pool=POOL,
        kinds={"optuna", "duckdb"},
        description="Optuna study of each strategy's `tuning:` search space (walk-forward out-of-sample net "
        "objective); writes `tuning_trials` and tuning_report.md. Not in the daily chain.",
    )
    def tuning_studies(
        context: dg.AssetExecutionContext,
        config: TuningRun,
        warehouse: Warehouse,
        project_files: ProjectFiles,
        tuning_storage: TuningStorage,
    ) -> dg.MaterializeResult:
        strategy = context.partition_key
        return run_tuning(
            warehouse,
            project_files.load(),
            strategy,
            tuning_storage,
            config,
            run_dir=project_files.run_dir(context.run_id),
            progress=_Progress(context, strategy),
        ).result()

    return [tuning_studies]
