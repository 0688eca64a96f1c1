"""The Postgres instance profile (deploy/dagster.postgres.yaml) against a real PostgreSQL server that the test
starts from Debian's package (initdb into a temporary folder, pg_ctl on a free port; as the `postgres` user
when the tests run as root, since PostgreSQL refuses to run as root). The team set-up: a standalone
`dagster-daemon run` on that instance executes a partition backfill queued with `dagster job backfill`; the
run, its events, its per-partition check history and the daemon's heartbeats are in Postgres.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from e2e import (
    BIN,
    LOCATION,
    REPO,
    checks_report,
    free_port,
    make_stack,
    require_binary,
    run_cli,
    server,
    wait_for,
)

from quantlab.definitions import CHAIN_JOB, defs

pytestmark = pytest.mark.slow

DAY = "2013-02-27"


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture(scope="module")
def postgres() -> Iterator[dict[str, str]]:
    """A throw-away PostgreSQL server; yields the DAGSTER_PG_* variables of the profile."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    pg_ctl = require_binary(found[-1] if found else None, "PostgreSQL (Debian package postgresql)")
    bindir = Path(pg_ctl).parent
    # not under pytest's tmp dir: its parents are private to root and the server runs as `postgres`
    root = Path(tempfile.mkdtemp(prefix="quantlab-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", free_port()
    subprocess.run(
        _as_postgres(
            [str(bindir / "initdb"), "-D", str(data), "-U", "dagster", "--auth=trust", "-E", "UTF8"]
        ),
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    start = [str(pg_ctl), "-D", str(data), "-o", options, "-l", str(root / "server.log"), "-w", "start"]
    subprocess.run(_as_postgres(start), check=True, capture_output=True)
    try:
        subprocess.run(
            [
                "psql",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                "dagster",
                "-d",
                "postgres",
                "-c",
                "CREATE DATABASE quantlab",
            ],
            check=True,
            capture_output=True,
        )
        yield {
            "DAGSTER_PG_HOST": "127.0.0.1",
            "DAGSTER_PG_PORT": str(port),
            "DAGSTER_PG_USER": "dagster",
            "DAGSTER_PG_PASSWORD": "unused-with-trust-auth",
            "DAGSTER_PG_DB": "quantlab",
        }
    finally:
        subprocess.run(
            _as_postgres([str(pg_ctl), "-D", str(data), "-m", "immediate", "stop"]), capture_output=True
        )
        shutil.rmtree(root, ignore_errors=True)


def _sql(pg: dict[str, str], query: str) -> list[tuple]:
    import psycopg2

    with (
        psycopg2.connect(
            host=pg["DAGSTER_PG_HOST"],
            port=pg["DAGSTER_PG_PORT"],
            user=pg["DAGSTER_PG_USER"],
            dbname=pg["DAGSTER_PG_DB"],
        ) as con,
        con.cursor() as cur,
    ):
        cur.execute(query)
        return cur.fetchall()


def test_daemon_runs_a_cli_backfill_on_the_postgres_profile(
    postgres: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = make_stack(tmp_path, REPO / "deploy" / "dagster.postgres.yaml", **postgres)
    env = stack.env(**postgres)
    for key, value in postgres.items():  # the profile reads the DAGSTER_PG_* variables
        monkeypatch.setenv(key, value)
    instance = dg.DagsterInstance.from_config(str(stack.home))
    log = tmp_path / "daemon.log"
    with server([str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"], env, log) as daemon:
        out = run_cli(
            stack,
            "dagster",
            "job",
            "backfill",
            "-w",
            "workspace.yaml",
            "-l",
            LOCATION,
            "-j",
            CHAIN_JOB,
            "--from",
            DAY,
            "--to",
            DAY,
            "--noprompt",
            env=env,
        )
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]

        def finished() -> bool:
            assert daemon.poll() is None, log.read_text()[-3000:]
            runs = instance.get_runs()
            assert all(r.status != dg.DagsterRunStatus.FAILURE for r in runs), log.read_text()[-3000:]
            return len(runs) == 1 and runs[0].status == dg.DagsterRunStatus.SUCCESS

        wait_for("the daemon to run the backfill", finished, timeout=300, log=log)

    # nothing of the instance is in DAGSTER_HOME's SQLite files: it is all in Postgres
    assert not list(stack.home.rglob("*.db"))
    ((run_id, status, partition),) = _sql(
        postgres,
        "SELECT run_id, status, (SELECT value FROM run_tags t WHERE t.run_id = r.run_id AND key = 'dagster/partition') FROM runs r",
    )
    assert (status, partition) == ("SUCCESS", DAY)
    materialized = _sql(
        postgres,
        "SELECT asset_key, partition FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'",
    )
    chain = defs.resolve_job_def(CHAIN_JOB).asset_layer.asset_graph
    assert {p for _, p in materialized} == {DAY}
    assert len(materialized) == len(chain.get_all_asset_keys())  # the whole chain
    checks = _sql(postgres, "SELECT check_name, partition, execution_status FROM asset_check_executions")
    assert {(p, s) for _, p, s in checks} == {(DAY, "SUCCEEDED")}
    assert len(checks) == len(chain.asset_check_keys)
    assert {t for (t,) in _sql(postgres, "SELECT daemon_type FROM daemon_heartbeats")} >= {
        "BACKFILL",
        "QUEUED_RUN_COORDINATOR",
    }
    # the quantlab CLI reads the same instance through the profile
    code, rows = checks_report(stack, DAY, env=env)
    assert code == 0 and all(r["dagster"]["passed"] and r["dagster"]["run_id"] == run_id for r in rows), rows
