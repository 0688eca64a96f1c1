"""Sensor on the user's configuration: a new or changed strategy, world, feature-set, supervisor or curator
file requests the evaluation of the chain from `targets` on, for the latest materialized partition.

The cursor is a digest of every configuration file's path and content; the first tick only records it.
A new world file adds assets, which needs a reload of the code location (UI: Deployment > Reload, or a
restart of `dagster dev`): the reloaded sensor then sees the change and requests the evaluation, the new
world's assets included.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import dagster as dg

CONFIG_GLOBS = (
    "strategies/*.yaml",
    "worlds/*.yaml",
    "feature_sets/*.yaml",
    "supervisor.yaml",
    "curator.yaml",
)
SENSOR = "config_files"


def config_digest(root: Path) -> str:
    """sha256 over the sorted (relative path, content) of every configuration file under `root`."""
    h = hashlib.sha256()
    for path in sorted(p for pattern in CONFIG_GLOBS for p in root.glob(pattern)):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def config_sensor(root: Path, job: dg.UnresolvedAssetJobDefinition) -> dg.SensorDefinition:
    @dg.sensor(
        name=SENSOR,
        job=job,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Re-evaluates strategies and worlds (targets and everything downstream) for the latest "
        "materialized partition when a configuration file is added or changed.",
    )
    def _sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        digest = config_digest(root)
        if context.cursor is None:
            return dg.SensorResult(skip_reason="baseline of the configuration recorded", cursor=digest)
        if context.cursor == digest:
            return dg.SkipReason("no configuration change")
        event = context.instance.get_latest_materialization_event(dg.AssetKey("ohlcv"))
        partition = event.asset_materialization.partition if event and event.asset_materialization else None
        if partition is None:
            return dg.SensorResult(
                skip_reason="configuration changed but no partition is materialized yet", cursor=digest
            )
        graph = context.repository_def.asset_graph
        selection = dg.AssetSelection.assets("targets").downstream().resolve(graph)
        request = dg.RunRequest(
            run_key=f"config-{digest[:16]}-{partition}",
            partition_key=partition,
            asset_selection=sorted(selection, key=lambda k: k.to_user_string()),
            tags={"quantlab/trigger": "configuration change"},
        )
        return dg.SensorResult(run_requests=[request], cursor=digest)

    return _sensor
