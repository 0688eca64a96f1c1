"""Run artifacts beside the stage reports: `artifacts/runs/<run_id>/pipeline.log` (the run's event log as text)
and `summary.json` (job, partition or range, step outcomes, materializations with the report files linked from
their metadata, check results).

Hooks of the `daily_chain` and `history` jobs rewrite both files after every step, from the instance's event
log, so they hold the run up to its last finished step whatever launched it (UI, schedule, sensor, backfill,
`quantlab demo`); a failed step is recorded with its error.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any

import dagster as dg

PARTITION_TAGS = (
    "dagster/partition",
    "dagster/asset_partition_range_start",
    "dagster/asset_partition_range_end",
)
STEP_OUTCOMES = {"STEP_SUCCESS": "success", "STEP_FAILURE": "failure", "STEP_SKIPPED": "skipped"}


def _line(entry: dg.EventLogEntry) -> str:
    at = dt.datetime.fromtimestamp(entry.timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    kind = entry.dagster_event.event_type_value if entry.dagster_event else "LOG"
    message = (
        entry.dagster_event.message if entry.dagster_event and entry.dagster_event.message else entry.message
    )
    return f"{at} {logging.getLevelName(entry.level):<7} {entry.step_key or '-'} {kind} - {message}"


def run_summary(instance: dg.DagsterInstance, run_id: str) -> tuple[dict[str, Any], list[str]]:
    """The run's summary and its event log lines, from the instance."""
    run = instance.get_run_by_id(run_id)
    entries = instance.all_logs(run_id)
    steps: dict[str, str] = {}
    assets: dict[str, dict[str, Any]] = {}
    checks = []
    errors = {}
    for entry in entries:
        event = entry.dagster_event
        if event is None:
            continue
        if event.event_type_value in STEP_OUTCOMES and event.step_key:
            steps[event.step_key] = STEP_OUTCOMES[event.event_type_value]
            if event.event_type_value == "STEP_FAILURE" and event.step_failure_data.error is not None:
                errors[event.step_key] = event.step_failure_data.error.message.strip()
        elif event.is_step_materialization:
            mat = event.step_materialization_data.materialization
            asset = assets.setdefault(mat.asset_key.to_user_string(), {"partitions": [], "reports": {}})
            if mat.partition:
                asset["partitions"].append(mat.partition)
            for name, value in mat.metadata.items():
                if isinstance(value, dg.PathMetadataValue):
                    asset["reports"][name] = str(value.path)
        elif event.event_type_value == "ASSET_CHECK_EVALUATION":
            evaluation = event.asset_check_evaluation_data
            checks.append(
                {
                    "asset": evaluation.asset_key.to_user_string(),
                    "check": evaluation.check_name,
                    "passed": evaluation.passed,
                    "severity": evaluation.severity.value,
                    "partition": evaluation.partition,
                }
            )
    for asset in assets.values():
        parts = sorted(set(asset.pop("partitions")))
        asset.update(
            first=parts[0] if parts else None, last=parts[-1] if parts else None, partitions=len(parts)
        )
    summary = {
        "run_id": run_id,
        "job": run.job_name if run else None,
        "status": run.status.value if run else None,
        "tags": {
            k: v
            for k, v in (run.tags if run else {}).items()
            if k in PARTITION_TAGS or k.startswith("quantlab/")
        },
        "steps": steps,
        "errors": errors,
        "assets": assets,
        "checks": checks,
    }
    return summary, [_line(e) for e in entries]


def write_run_artifacts(instance: dg.DagsterInstance, run_id: str, run_dir: Path) -> dict[str, Any]:
    summary, lines = run_summary(instance, run_id)
    (run_dir / "pipeline.log").write_text("\n".join(lines) + "\n")
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def _record(context: dg.HookContext) -> None:
    write_run_artifacts(
        context.instance, context.run_id, context.resources.project_files.run_dir(context.run_id)
    )


@dg.success_hook(name="run_artifacts_on_success", required_resource_keys={"project_files"})
def _on_success(context: dg.HookContext) -> None:
    _record(context)


@dg.failure_hook(name="run_artifacts_on_failure", required_resource_keys={"project_files"})
def _on_failure(context: dg.HookContext) -> None:
    _record(context)


RUN_ARTIFACT_HOOKS = {_on_success, _on_failure}
