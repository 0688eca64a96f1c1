"""Progress of an in-process Dagster run on the command line: a bar counting the run's finished steps.

`execute_in_process` blocks until the run ends, so a background thread reads the run's step events from the
instance's event log (the same records the UI shows) and moves the bar; on a terminal it is a click progress
bar, elsewhere (logs, CI) only its label is printed.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Protocol, TypeVar

import click
import dagster as dg

T = TypeVar("T")
_STEP_ENDS = {
    dg.DagsterEventType.STEP_SUCCESS,
    dg.DagsterEventType.STEP_FAILURE,
    dg.DagsterEventType.STEP_SKIPPED,
}


class Bar(Protocol):
    def update(self, n_steps: int) -> None: ...


def finished_steps(instance: dg.DagsterInstance, run_id: str) -> int:
    """Steps of the run that succeeded, failed or were skipped so far."""
    return len(instance.get_records_for_run(run_id, of_type=_STEP_ENDS).records)


def run_with_progress(
    instance: dg.DagsterInstance,
    execute: Callable[[], T],
    bar: Bar,
    poll_seconds: float = 0.5,
) -> T:
    """`execute()` (one Dagster run on `instance`) while `bar.update(k)` reports each newly finished step."""
    before = {r.run_id for r in instance.get_runs(limit=20)}
    stop = threading.Event()

    def watch() -> None:
        run_id, seen, last = None, 0, False
        while not last:
            last = stop.wait(poll_seconds)  # one more look after the run ended: its last steps
            if run_id is None:
                new = [r.run_id for r in instance.get_runs(limit=5) if r.run_id not in before]
                if not new:
                    continue
                run_id = new[0]
            done = finished_steps(instance, run_id)
            if done > seen:
                bar.update(done - seen)
                seen = done

    thread = threading.Thread(target=watch, name="quantlab-progress", daemon=True)
    thread.start()
    try:
        return execute()
    finally:
        stop.set()
        thread.join()


def step_bar(label: str, n_steps: int):  # noqa: ANN201 - click's ProgressBar context manager
    """A click progress bar over `n_steps` steps on stderr (only the label when stderr is not a terminal)."""
    return click.progressbar(length=n_steps, label=label, file=sys.stderr, show_pos=True)
