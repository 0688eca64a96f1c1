"""The UI path, end to end: `dagster dev -w workspace.yaml` started from Python on a free port with a
temporary DAGSTER_HOME and warehouse (one server for the whole module). Over GraphQL: a run of one partition
(DagsterGraphQLClient) and a backfill of the job's partitions (`launchPartitionBackfill`, one ranged run by
the backfill policy); from the CLI: `dagster job backfill` on the same workspace (one run per partition),
executed by the server's daemon; then the check executions per partition (`assetCheckExecutions`) and the
run artifacts. In Debian's chromium (headless, driven by playwright): the asset graph, a world check's page
and a run page, with screenshots in artifacts/test-screenshots/.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from e2e import (
    BIN,
    LOCATION,
    REPO,
    Stack,
    checks_report,
    free_port,
    graphql,
    http_ok,
    make_stack,
    require_binary,
    run_cli,
    server,
    wait_for,
)

from quantlab.definitions import CHAIN_JOB

pytestmark = pytest.mark.slow

RUN_DAY = "2013-02-25"
BACKFILL_DAYS = ["2013-02-26", "2013-02-27"]
CLI_DAYS = ["2013-02-28", "2013-03-01"]
WORLD_CHECK = ("world_evaluation/core_equity", "core_equity_gates")
GROUPS = ["curator", "features", "strategy_lab", "backtest", "supervisor", "worlds"]
SCREENSHOTS = REPO / "artifacts" / "test-screenshots"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass(frozen=True)
class Server:
    stack: Stack
    url: str
    port: int
    log: Path


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    stack = make_stack(tmp_path_factory.mktemp("dev"))
    port = free_port()
    log = stack.root / "dagster_dev.log"
    cmd = [str(BIN / "dagster"), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)]
    with server(cmd, stack.env(), log) as proc:
        url = f"http://127.0.0.1:{port}"

        def loaded() -> bool:
            assert proc.poll() is None, log.read_text()[-3000:]
            if not http_ok(f"{url}/server_info"):
                return False
            data = graphql(
                url, "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"
            )
            entries = data["workspaceOrError"]["locationEntries"]
            return any(e["name"] == LOCATION and e["loadStatus"] == "LOADED" for e in entries)

        wait_for("dagster dev to load the code location", loaded, timeout=180, log=log)
        yield Server(stack, url, port, log)


RUNS = """query ($tags: [ExecutionTag!]) {
  runsOrError(filter: {tags: $tags}) { ... on Runs { results { runId status startTime endTime tags { key value } } } }
}"""


def _runs(dev: Server, **tags: str) -> list[dict]:
    data = graphql(dev.url, RUNS, {"tags": [{"key": k, "value": v} for k, v in tags.items()]})
    return data["runsOrError"]["results"]


def _partition(run: dict) -> str:
    return next(t["value"] for t in run["tags"] if t["key"] == "dagster/partition")


def _wait_runs(dev: Server, what: str, n: int, **tags: str) -> list[dict]:
    def done() -> list[dict] | None:
        runs = _runs(dev, **tags)
        bad = [r for r in runs if r["status"] in ("FAILURE", "CANCELED")]
        assert not bad, f"{what}: runs failed {bad}\n{dev.log.read_text()[-3000:]}"
        return runs if len(runs) == n and all(r["status"] == "SUCCESS" for r in runs) else None

    return wait_for(what, done, timeout=300, log=dev.log)


@pytest.fixture(scope="module")
def graphql_run(dev: Server) -> str:
    """A run of the chain for one partition, submitted with DagsterGraphQLClient; its id once it succeeded."""
    from dagster_graphql import DagsterGraphQLClient

    client = DagsterGraphQLClient("127.0.0.1", port_number=dev.port)
    run_id = client.submit_job_execution(
        CHAIN_JOB, repository_location_name=LOCATION, tags={"dagster/partition": RUN_DAY}
    )

    def succeeded() -> bool:
        status = client.get_run_status(run_id).value
        assert status not in ("FAILURE", "CANCELED"), dev.log.read_text()[-3000:]
        return status == "SUCCESS"

    wait_for("the GraphQL run to succeed", succeeded, timeout=300, log=dev.log)
    return run_id


BACKFILL = """mutation ($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}"""


@pytest.fixture(scope="module")
def graphql_backfill(dev: Server, graphql_run: str) -> dict:
    """A backfill of the chain's partition set over two sessions, launched over GraphQL (what the UI's
    "Launch backfill" posts); the chain's single-run backfill policy makes it ONE run over the range."""
    params = {
        "selector": {
            "partitionSetName": f"{CHAIN_JOB}_partition_set",
            "repositorySelector": {"repositoryLocationName": LOCATION, "repositoryName": "__repository__"},
        },
        "partitionNames": BACKFILL_DAYS,
    }
    launched = graphql(dev.url, BACKFILL, {"params": params})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    (run,) = _wait_runs(dev, "the GraphQL backfill", 1, **{"dagster/backfill": launched["backfillId"]})
    return run


@pytest.fixture(scope="module")
def cli_backfill(dev: Server, graphql_backfill: dict) -> list[dict]:
    """`dagster job backfill` from the CLI with the same workspace (code location `quantlab`), executed by the
    server's daemon: one run per partition, one at a time in date order (dagster.yaml)."""
    out = run_cli(
        dev.stack,
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
        CLI_DAYS[0],
        "--to",
        CLI_DAYS[-1],
        "--noprompt",
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    runs = [
        r
        for r in _wait_runs(dev, "the CLI backfill", len(CLI_DAYS) + 2)
        if any(t["key"] == "dagster/partition" and t["value"] in CLI_DAYS for t in r["tags"])
    ]
    runs.sort(key=_partition)
    assert [_partition(r) for r in runs] == CLI_DAYS
    assert runs[0]["endTime"] <= runs[1]["startTime"]  # one at a time, in date order
    return runs


CHECK_EXECUTIONS = """query ($key: AssetKeyInput!, $check: String!) {
  assetCheckExecutions(assetKey: $key, checkName: $check, limit: 50) {
    runId status partition evaluation { success severity }
  }
}"""


def _tag(run: dict, key: str) -> str | None:
    return next((t["value"] for t in run["tags"] if t["key"] == key), None)


def test_runs_and_backfills_record_their_checks(
    dev: Server, graphql_run: str, graphql_backfill: dict, cli_backfill: list[dict]
) -> None:
    """Single-partition runs (the GraphQL run, the CLI backfill's runs) have a check execution per partition;
    the ranged backfill run has one execution for its range (a Dagster limitation) and the per-date verdicts
    come from the warehouse through `quantlab checks report`."""
    assert _tag(graphql_backfill, "dagster/asset_partition_range_start") == BACKFILL_DAYS[0]
    assert _tag(graphql_backfill, "dagster/asset_partition_range_end") == BACKFILL_DAYS[-1]
    run_of = {RUN_DAY: graphql_run, **{_partition(r): r["runId"] for r in cli_backfill}}
    checks = [
        ("ohlcv", "missing_session"),
        WORLD_CHECK,
        ("world_allocation/core_equity", "core_equity_budgets"),
    ]
    for asset, check in checks:
        data = graphql(dev.url, CHECK_EXECUTIONS, {"key": {"path": asset.split("/")}, "check": check})
        executions = data["assetCheckExecutions"]
        done = {e["partition"]: e for e in executions if e["status"] == "SUCCEEDED"}
        assert set(done) == {*run_of, None}, (asset, check, executions)
        assert all(e["evaluation"]["success"] for e in done.values())
        assert {p: e["runId"] for p, e in done.items() if p} == run_of
        assert done[None]["runId"] == graphql_backfill["runId"]
    for day in BACKFILL_DAYS:
        code, rows = checks_report(dev.stack, day, "--world", "core_equity")
        assert code == 0 and WORLD_CHECK[1] in {r["check"] for r in rows}
        assert all(r["warehouse"]["passed"] and r["dagster"]["passed"] is None for r in rows), rows
    summary = json.loads((dev.stack.artifacts / "runs" / graphql_run / "summary.json").read_text())
    assert summary["tags"] == {"dagster/partition": RUN_DAY} and set(summary["steps"].values()) == {"success"}
    assert (
        "world_allocation__core_equity STEP_SUCCESS"
        in (dev.stack.artifacts / "runs" / graphql_run / "pipeline.log").read_text()
    )
    status = run_cli(dev.stack, "quantlab", "status", "--json")
    assert status.returncode == 0, status.stderr
    latest = {a["asset"]: a for a in json.loads(status.stdout)["assets"]}
    assert latest["ohlcv"]["partition"] == CLI_DAYS[-1]
    assert latest["world_allocation/core_equity"]["run_id"] == run_of[CLI_DAYS[-1]]
    code, rows = checks_report(dev.stack, CLI_DAYS[-1])
    assert code == 0
    assert all(r["dagster"]["passed"] and r["dagster"]["run_id"] == run_of[CLI_DAYS[-1]] for r in rows), rows


def test_ui_in_a_real_browser(
    dev: Server, graphql_run: str, cli_backfill: list[dict], tmp_path: Path
) -> None:
    """What a user sees: the asset graph of the chain's groups and of the worlds, a world check's latest
    execution on its partition, and a successful run with its steps; screenshots in SCREENSHOTS."""
    chromium = require_binary("/usr/bin/chromium", "Debian's chromium")
    from playwright.sync_api import sync_playwright  # drives the system chromium; no browser download

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1600, "height": 1000},
        )
        try:
            page = context.new_page()
            skip = page.get_by_role("button", name="Skip")  # Dagster's first-visit newsletter dialog
            page.add_locator_handler(page.get_by_text("Join the Dagster community"), lambda: skip.click())

            def shows(path: str, texts: list[str], shot: str, click: str | None = None) -> str:
                """Open `path` (clicking `click` once it shows), wait until the page shows every text."""
                page.goto(f"{dev.url}{path}")
                if click is not None:
                    page.get_by_text(click, exact=True).first.click(timeout=60_000)
                deadline = time.monotonic() + 60
                while not all(t in (body := page.inner_text("body")) for t in texts):
                    assert time.monotonic() < deadline, f"{path} does not show {texts}:\n{body[:3000]}"
                    page.wait_for_timeout(500)
                page.locator("body").hover(position={"x": 1, "y": 1})  # an action: the dialog handler runs
                page.screenshot(path=str(SCREENSHOTS / shot), full_page=True)
                return body

            shows("/asset-groups", ["Global asset lineage", *GROUPS], "asset_graph.png")
            shows(
                f"/locations/__repository__@{LOCATION}/asset-groups/worlds",
                ["core_equity", "momentum_lab", "approvals", "kpis", "Asset checks"],
                "asset_graph_worlds.png",
            )
            asset, check = WORLD_CHECK
            shows(
                f"/assets/{asset}?view=checks",
                [
                    "World core_equity rule family gates",
                    "Evaluation result\nPassed",
                    CLI_DAYS[-1],
                    "core_equity@v1",
                ],
                "world_check.png",
                click=check,
            )
            shows(
                f"/runs/{graphql_run}",
                ["Success", CHAIN_JOB, f"partition: {RUN_DAY}", "Succeeded (12)"],
                "run.png",
            )
        finally:
            context.close()
    for shot in ("asset_graph.png", "asset_graph_worlds.png", "world_check.png", "run.png"):
        assert (SCREENSHOTS / shot).stat().st_size > 10_000
