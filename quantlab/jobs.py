"""The `history` job: the whole chain over a long date range in ONE run, as ops.

Why it exists: Dagster records two events per asset partition of a ranged run (planned + materialized) and
one planned row per partition-aware check; on the default SQLite instance that costs 20-40 ms per asset
partition on this hardware, i.e. 20+ minutes for 13 years x 11 assets, before any computation. The
`history` job runs the same stage functions as the partitioned assets (`quantlab.assets.*.run_*`) over a
range, writing the same per-date warehouse rows in minutes; the partitioned chain then continues from it
(ranged runs and daily partitions read their warm-up and previous state from the warehouse). A blocking
check that fails in an op stops the ops downstream of it, as in the asset job.
"""

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import polars as pl

from quantlab.assets.backtest import run_kpis, run_strategy_returns
from quantlab.assets.common import POOL, StageRun, md_table
from quantlab.assets.curator import run_anomaly_scores, run_ohlcv
from quantlab.assets.features import run_features, run_labels
from quantlab.assets.strategy_lab import run_targets
from quantlab.assets.supervisor import run_approvals
from quantlab.assets.world import run_world_allocation, run_world_evaluation
from quantlab.project import Project
from quantlab.resources import MarketData, ProjectFiles, Warehouse
from quantlab.run_artifacts import RUN_ARTIFACT_HOOKS

HISTORY_JOB = "history"


class HistoryWindow(dg.ConfigurableResource):
    """The date range of a `history` run (ISO dates), given at launch."""

    start: str
    end: str

    def dates(self) -> tuple[dt.date, dt.date]:
        return dt.date.fromisoformat(self.start), dt.date.fromisoformat(self.end)


def _finish(context: dg.OpExecutionContext, name: str, run: StageRun) -> None:
    """Report a stage's outcome on the op; fail it when a blocking check failed."""
    checks = [{"check": c.check_name, "passed": c.passed, "severity": c.severity.value} for c in run.checks]
    metadata = dict(run.metadata)
    if checks:
        metadata["checks"] = dg.MetadataValue.md(md_table(pl.DataFrame(checks)))
    context.add_output_metadata(metadata)
    if run.blocking_failures:
        raise dg.Failure(
            f"{name}: blocking checks failed: {', '.join(run.blocking_failures)}", metadata=metadata
        )


Runner = Callable[[Warehouse, MarketData, Project, dt.date, dt.date, Path], StageRun]

CHAIN: list[tuple[str, Runner]] = [
    ("ohlcv", lambda w, m, p, a, b, r: run_ohlcv(w, m.source(), a, b, p.curator.quality, r)),
    ("anomaly_scores", lambda w, m, p, a, b, r: run_anomaly_scores(w, p.curator.anomaly, a, b)),
    ("features", lambda w, m, p, a, b, r: run_features(w, a, b, r)),
    ("labels", lambda w, m, p, a, b, r: run_labels(w, a, b)),
    ("targets", lambda w, m, p, a, b, r: run_targets(w, m, p, a, b, r)),
    ("strategy_returns", lambda w, m, p, a, b, r: run_strategy_returns(w, p, a, b, r)),
    ("kpis", lambda w, m, p, a, b, r: run_kpis(w, a, b)),
    ("approvals", lambda w, m, p, a, b, r: run_approvals(w, p, a, b, r)),
]


def _stage_op(name: str, fn: Runner) -> dg.OpDefinition:
    @dg.op(name=f"history_{name}", ins={"after": dg.In(dg.Nothing)}, pool=POOL)
    def _op(
        context: dg.OpExecutionContext,
        history_window: HistoryWindow,
        warehouse: Warehouse,
        market_data: MarketData,
        project_files: ProjectFiles,
    ) -> None:
        run_dir = project_files.run_dir(context.run_id)
        _finish(
            context, name, fn(warehouse, market_data, project_files.load(), *history_window.dates(), run_dir)
        )

    return _op


def _world_op(project: Project, world_id: str, kind: str) -> dg.OpDefinition:
    @dg.op(name=f"history_world_{kind}_{world_id}", ins={"after": dg.In(dg.Nothing)}, pool=POOL)
    def _op(
        context: dg.OpExecutionContext,
        history_window: HistoryWindow,
        warehouse: Warehouse,
        project_files: ProjectFiles,
    ) -> None:
        world = project.worlds[world_id]
        window = history_window.dates()
        if kind == "evaluation":
            run = run_world_evaluation(
                warehouse, project, world, *window, project_files.run_dir(context.run_id)
            )
        else:
            run = run_world_allocation(
                warehouse, project, world, *window, project_files.run_dir(context.run_id)
            )
        _finish(context, f"world_{kind}/{world_id}", run)

    return _op


def history_job(project: Project) -> dg.JobDefinition:
    """The chain as ops in dependency order, every world's evaluation then allocation after `approvals`."""
    chain = [_stage_op(name, fn) for name, fn in CHAIN]
    worlds = [
        (_world_op(project, w, "evaluation"), _world_op(project, w, "allocation")) for w in project.worlds
    ]

    @dg.graph(name=HISTORY_JOB, description="The whole chain over a date range in one run (bulk history).")
    def _graph() -> None:
        done = None
        for op in chain:
            done = op(done) if done is not None else op()
        for evaluation, allocation in worlds:
            allocation(evaluation(done))

    return _graph.to_job(executor_def=dg.in_process_executor, hooks=RUN_ARTIFACT_HOOKS)
