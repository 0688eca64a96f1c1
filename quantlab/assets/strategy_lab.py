"""`targets`: each strategy's target weights decided at the close of each as-of date (and, for model
strategies, the walk-forward models fitted on the fit dates of the range: the `models` table)."""

import datetime as dt
import time
from pathlib import Path

import dagster as dg
import polars as pl

from quantlab.assets.common import StageRun, chain_asset, md_table, write
from quantlab.partitions import partition_dates
from quantlab.project import Project
from quantlab.resources import MarketData, ProjectFiles, SchemaViolation, Warehouse
from quantlab.resources.warehouse import validate
from quantlab.strategy_lab.model import ModelCache, history_start, models_frame, walk_forward
from quantlab.strategy_lab.spec import ModelSignal, resolve_feature_set
from quantlab.strategy_lab.summary import strategy_summary
from quantlab.strategy_lab.targets import all_targets


def model_cache_dir(warehouse: Warehouse) -> Path | None:
    """Where fitted models are cached: `models/` next to the warehouse file (none for an in-memory one)."""
    db = str(warehouse.database)
    if not db or db.startswith(":") or db.startswith("md:"):
        return None
    return Path(db).resolve().parent / "models"


def run_targets(
    warehouse: Warehouse,
    market_data: MarketData,
    project: Project,
    start: dt.date,
    end: dt.date,
    run_dir: Path | None = None,
    model_dir: Path | None = None,
) -> StageRun:
    """Targets of every strategy for [start, end], and the `models` rows of the model strategies' fit dates
    in [start, end]; fails before any write if a universe names a symbol the dataset does not have or a
    model strategy names an unknown feature set. Model strategies read features and labels back to their
    training windows (`history_start`) and reuse fitted models cached in `model_dir` (default:
    `model_cache_dir(warehouse)`). With `run_dir`, writes `reports/strategy_summary.md`."""
    specs = project.strategies
    known = set(market_data.source().registry().get_column("symbol").to_list())
    unknown = {s: sorted(set(spec.universe.symbols or []) - known) for s, spec in specs.items()}
    unknown = {s: u for s, u in unknown.items() if u}
    if unknown:
        raise dg.Failure(f"universe symbols without data in dataset '{market_data.dataset}': {unknown}")
    model_specs = {s: spec for s, spec in specs.items() if isinstance(spec.signal, ModelSignal)}
    sets = project.feature_sets if model_specs else {}
    try:
        fsets = {s: resolve_feature_set(spec.signal, sets) for s, spec in model_specs.items()}
    except ValueError as exc:
        raise dg.Failure(f"model strategy: {exc}") from None

    began = time.perf_counter()
    first = min([history_start(spec.signal, start) for spec in model_specs.values()], default=start)
    history = warehouse.read_table("features", min(first, start), end)
    feats = history.filter(pl.col("date") >= start) if first < start else history
    scores, model_rows, cache = {}, [], ModelCache(model_dir or model_cache_dir(warehouse))
    if model_specs:
        wanted = sorted({spec.signal.label for spec in model_specs.values()})
        labels = warehouse.read_table("labels", first, end, where={"label": wanted})
        for sid, spec in model_specs.items():
            wf = walk_forward(history, labels, spec, fsets[sid], start, end, cache)
            scores[sid] = wf.scores
            model_rows.append(wf.models)
    models = pl.concat(model_rows) if model_rows else models_frame([])
    model_s = time.perf_counter() - began

    out = all_targets(feats, specs, scores)
    for table, frame in (("targets", out), ("models", models)):  # both checked before either is written
        try:
            validate(table, frame)
        except SchemaViolation as exc:
            raise dg.Failure(
                description=str(exc),
                metadata={"failure_cases": dg.MetadataValue.md(md_table(exc.failure_cases)), "table": table},
            ) from None
    n = write(warehouse, "targets", out, start, end)
    n_models = write(warehouse, "models", models, start, end)
    summary = (
        out.group_by("strategy")
        .agg(
            pl.col("date").n_unique().alias("dates"),
            (pl.col("weight") != 0).sum().alias("positions"),
            pl.col("weight").abs().sum().truediv(pl.col("date").n_unique()).alias("avg_gross"),
        )
        .sort("strategy")
        if n
        else pl.DataFrame()
    )
    metadata = {
        "rows": n,
        "strategies": len(specs),
        "summary": dg.MetadataValue.md(md_table(summary)),
        "models": n_models,
        "model_strategies": len(model_specs),
    }
    if model_specs:
        metadata["model_fits"] = cache.misses
        metadata["model_cache_hits"] = cache.hits
        metadata["model_seconds"] = round(model_s, 2)
        if n_models:
            metadata["models_fitted"] = dg.MetadataValue.md(
                md_table(models.select("strategy", "date", "model_id", "n_train", "in_sample_ic", "oos_ic"))
            )
    if run_dir is not None:
        path = Path(run_dir) / "reports" / "strategy_summary.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(strategy_summary(specs, out, models, start, end, sets))
        metadata["strategy_summary"] = dg.MetadataValue.path(str(path))
    return StageRun(metadata=metadata)


@chain_asset(
    group_name="strategy_lab",
    deps=["features", "labels"],
    kinds={"duckdb", "polars", "sklearn"},
    description="Target weights (score, side) per strategy, date and symbol from strategies/*.yaml; model "
    "strategies also write the walk-forward models fitted on the range's fit dates (`models`).",
)
def targets(
    context: dg.AssetExecutionContext,
    warehouse: Warehouse,
    market_data: MarketData,
    project_files: ProjectFiles,
) -> dg.MaterializeResult:
    return run_targets(
        warehouse,
        market_data,
        project_files.load(),
        *partition_dates(context),
        run_dir=project_files.run_dir(context.run_id),
    ).result()
