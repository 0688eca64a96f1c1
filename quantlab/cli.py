"""The `quantlab` command line: `demo` (the whole chain on the embedded data) and `validate`."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sys
from pathlib import Path

import click

from quantlab.config import ConfigError


def _ensure_dagster_home(root: Path) -> Path:
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(root / ".dagster_home")))
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists() and (root / "dagster.yaml").exists():
        shutil.copy(root / "dagster.yaml", home / "dagster.yaml")
    return home


@click.group()
def main() -> None:
    """quantlab: a quant research production chain orchestrated by Dagster."""


@main.command()
def validate() -> None:
    """Validate every strategy and world file (and supervisor.yaml); exit 1 on the first bad file set."""
    from quantlab.project import load_project

    project = load_project()
    try:
        strategies, worlds, _ = project.strategies, project.worlds, project.supervisor
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    click.echo(f"ok: {len(strategies)} strategies, {len(worlds)} worlds in {project.root}")


@main.command()
@click.option("--start", type=click.DateTime(["%Y-%m-%d"]), default=None, help="First as-of date (default: data start).")
@click.option("--end", type=click.DateTime(["%Y-%m-%d"]), default=None, help="Last as-of date (default: data end).")
def demo(start: dt.datetime | None, end: dt.datetime | None) -> None:
    """Materialize the whole chain over the dataset's history in one ranged run and print a summary."""
    from quantlab.project import project_dir

    root = project_dir()
    _ensure_dagster_home(root)
    import dagster as dg

    from quantlab.curator import embedded
    from quantlab.definitions import CHAIN_JOB, defs
    from quantlab.resources import MarketData, Warehouse
    from quantlab.summary import render_text, world_summary

    dataset = MarketData().dataset
    first = (start.date() if start else embedded.FIRST_DATE) if dataset == "embedded" or start else None
    last = (end.date() if end else embedded.LAST_DATE) if dataset == "embedded" or end else None
    if first is None or last is None:
        raise click.UsageError(f"dataset '{dataset}': give --start and --end")
    click.echo(f"materializing the chain for {first} .. {last} on dataset '{dataset}' (one ranged run) ...")
    instance = dg.DagsterInstance.get()
    job = defs.resolve_job_def(CHAIN_JOB)
    result = job.execute_in_process(
        instance=instance,
        tags={"dagster/asset_partition_range_start": first.isoformat(), "dagster/asset_partition_range_end": last.isoformat()},
        raise_on_error=False,
    )
    warehouse = Warehouse()
    from quantlab.project import load_project

    checks = [
        {"asset": ev.asset_key.to_user_string(), "check": ev.check_name, "passed": ev.passed,
         "severity": ev.severity.value}
        for ev in result.get_asset_check_evaluations()
    ]
    artifacts = root / "artifacts" / "runs" / result.run_id
    artifacts.mkdir(parents=True, exist_ok=True)
    summary = {
        "run_id": result.run_id,
        "status": "SUCCESS" if result.success else "FAILURE",
        "start": first.isoformat(),
        "end": last.isoformat(),
        "dataset": dataset,
        "warehouse": str(Path(warehouse.database).resolve()),
        "artifacts": str(artifacts),
        "checks": checks,
        "worlds": [world_summary(warehouse, w, last) for w in sorted(load_project().worlds)],
    }
    (artifacts / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    text = render_text(summary)
    (artifacts / "summary.txt").write_text(text + "\n")
    click.echo(text)
    sys.exit(0 if result.success else 1)
