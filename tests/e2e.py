"""Helpers of the end-to-end tests: a temporary instance and warehouse, the dagster/quantlab commands as
subprocesses, long-running servers (started in their own session, stopped with SIGTERM then SIGKILL), and
the system binaries (chromium, PostgreSQL) that some tests need.

A test needing a binary skips with the reason when it is absent, except in CI (`CI=true`), where a missing
binary is a failure: `.ci/run` installs them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import dagster as dg
import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LOCATION = "quantlab"  # workspace.yaml's location_name = [tool.dagster] code_location_name


def require_binary(path: str | None, what: str) -> str:
    """The binary's path; skip (or fail under CI=true) when it is missing."""
    if path and Path(path).exists():
        return path
    reason = f"{what} is not installed (`.ci/run` installs it with apt-get)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI: {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Stack:
    """A temporary DAGSTER_HOME, warehouse and artifacts folder, with the environment that points at them."""

    root: Path

    @property
    def home(self) -> Path:
        return self.root / "dagster_home"

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse.duckdb"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            **os.environ,
            "DAGSTER_HOME": str(self.home),
            "QUANTLAB_WAREHOUSE": str(self.warehouse),
            "QUANTLAB_ARTIFACTS": str(self.artifacts),
            "QUANTLAB_PROJECT_DIR": str(REPO),
            "QUANTLAB_DATASET": "embedded",
            # the code under test, whether installed or taken from the working tree
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            "PYTHONWARNINGS": "ignore",
        }
        env.update(extra)
        return env


def make_stack(root: Path, instance_yaml: Path = REPO / "dagster.yaml", **instance_env: str) -> Stack:
    """A stack whose DAGSTER_HOME holds `instance_yaml` as dagster.yaml (what `make` does), its storage
    created once here: a daemon and a CLI command started together on an empty instance race to create it."""
    stack = Stack(root)
    stack.home.mkdir(parents=True)
    shutil.copy(instance_yaml, stack.home / "dagster.yaml")
    with mock.patch.dict(os.environ, instance_env):
        dg.DagsterInstance.from_config(str(stack.home)).dispose()
    return stack


def run_cli(stack: Stack, *args: str, timeout: float = 300, env: dict[str, str] | None = None):
    """Run `dagster ...`, `quantlab ...` (from this Python's bin folder) in the repository root."""
    return subprocess.run(
        [str(BIN / args[0]), *args[1:]],
        cwd=REPO,
        env=env or stack.env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def checks_report(
    stack: Stack, day: str, *extra: str, env: dict[str, str] | None = None
) -> tuple[int, list[dict[str, Any]]]:
    """`quantlab checks report --date DAY --json`: exit code and the parsed rows."""
    out = run_cli(stack, "quantlab", "checks", "report", "--date", day, "--json", *extra, env=env)
    assert out.returncode in (0, 1), out.stderr
    return out.returncode, json.loads(out.stdout)


@contextmanager
def server(cmd: Sequence[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """A long-running process in its own session; stopped with SIGTERM, then SIGKILL of its group."""
    with log.open("w") as out:
        proc = subprocess.Popen(
            list(cmd), cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield proc
        finally:
            stop(proc)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=20)
    with suppress(ProcessLookupError):  # children (code servers, run workers) may outlive the leader
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=20)


def wait_for(what: str, probe: Callable[[], Any], timeout: float, log: Path | None = None) -> Any:
    """Poll `probe` every half second until it returns something truthy; fail with the log's tail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.5)
    tail = log.read_text()[-4000:] if log is not None and log.exists() else ""
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{tail}")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def graphql(url: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """POST a GraphQL document to the webserver; the `data` of the answer (errors fail the test)."""
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    req = urllib.request.Request(f"{url}/graphql", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        answer = json.loads(resp.read())
    assert not answer.get("errors"), answer["errors"]
    return answer["data"]
