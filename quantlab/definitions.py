"""The one `dg.Definitions` of quantlab: chain assets, per-world assets and checks, job, schedule, resources."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from quantlab.assets.backtest import kpis, strategy_returns
from quantlab.assets.curator import anomaly_scores, ohlcv
from quantlab.assets.features import features, labels
from quantlab.assets.strategy_lab import targets
from quantlab.assets.supervisor import approvals
from quantlab.assets.tuning import TUNING_JOB, tuning_assets
from quantlab.assets.world import world_assets
from quantlab.jobs import HistoryWindow, history_job
from quantlab.partitions import TRADING_DAYS
from quantlab.project import Project, project_dir
from quantlab.resources import MarketData, ProjectFiles, Warehouse
from quantlab.resources.market_data import default_market_data
from quantlab.resources.tuning_storage import default_tuning_storage
from quantlab.run_artifacts import RUN_ARTIFACT_HOOKS
from quantlab.sensors import config_sensor

CHAIN_JOB = "daily_chain"


def build_definitions(
    project_root: str | None = None, warehouse: Warehouse | None = None, market_data: MarketData | None = None
) -> dg.Definitions:
    """Assemble the definitions from the project's strategies and worlds (read at load time).

    A malformed strategy or world file fails the load with a message naming file, line, field and reason.
    """
    root = project_root or str(project_dir())
    project = Project(Path(root))
    assets = [
        ohlcv,
        anomaly_scores,
        features,
        labels,
        targets,
        strategy_returns,
        kpis,
        approvals,
        *world_assets(project),
    ]
    tuning = tuning_assets(project)
    chain = dg.define_asset_job(
        CHAIN_JOB,
        selection=dg.AssetSelection.all() - dg.AssetSelection.groups("tuning"),
        partitions_def=TRADING_DAYS,
        description="The whole chain, ohlcv to world allocation, for one or more trading days.",
        hooks=RUN_ARTIFACT_HOOKS,
    )
    tuning_jobs = (
        [
            dg.define_asset_job(
                TUNING_JOB,
                selection=dg.AssetSelection.groups("tuning"),
                partitions_def=tuning[0].partitions_def,
                description="One strategy's Optuna study (partition = strategy id); not in the daily chain.",
            )
        ]
        if tuning
        else []
    )
    return dg.Definitions(
        assets=[*assets, *tuning],
        jobs=[chain, history_job(project), *tuning_jobs],
        sensors=[config_sensor(Path(root), chain)],
        schedules=[
            # 00:30 UTC requests the trading day that just ended (19:30/20:30 New York time, after the close);
            # a tick whose previous day is not an NYSE session requests nothing.
            dg.build_schedule_from_partitioned_job(
                chain,
                hour_of_day=0,
                minute_of_hour=30,
                description="The daily chain for each NYSE session, after the close (00:30 UTC).",
            )
        ],
        resources={
            "warehouse": warehouse or Warehouse(),
            "market_data": market_data or default_market_data(),
            "project_files": ProjectFiles(root=root),
            "history_window": HistoryWindow.configure_at_launch(),
            "tuning_storage": default_tuning_storage(),
        },
        executor=dg.in_process_executor,
    )


defs = build_definitions()
