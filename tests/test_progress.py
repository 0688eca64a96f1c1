"""The command-line progress bar follows a real in-process Dagster run step by step."""

import time

import dagster as dg

from quantlab.progress import finished_steps, run_with_progress


class _Bar:
    def __init__(self) -> None:
        self.updates: list[int] = []

    def update(self, n_steps: int) -> None:
        self.updates.append(n_steps)


@dg.op
def _slow(x: int) -> int:
    time.sleep(0.3)
    return x + 1


@dg.op
def _one() -> int:
    return 1


@dg.job
def _three_steps() -> None:
    _slow(_slow(_one()))


def test_bar_counts_every_finished_step_of_the_run() -> None:
    instance = dg.DagsterInstance.ephemeral()
    bar = _Bar()
    result = run_with_progress(
        instance, lambda: _three_steps.execute_in_process(instance=instance), bar, 0.05
    )
    assert result.success
    assert sum(bar.updates) == finished_steps(instance, result.run_id) == 3
    assert len(bar.updates) >= 2  # it moved while the run was going, not only at the end
