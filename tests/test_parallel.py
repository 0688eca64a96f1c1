"""Tests for quantlab.parallel: results and order of `tasks`, `start`, `prefetch`, serial inside a task."""

from __future__ import annotations

import threading

import pytest

from quantlab import parallel


def test_start_runs_in_a_pool_thread_and_returns_or_raises() -> None:
    assert parallel.start(lambda: 6 * 7).result() == 42
    if parallel.WORKERS > 1:
        assert parallel.start(lambda: threading.current_thread().name).result().startswith("quantlab")

    def fail() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        parallel.start(fail).result()


def test_prefetch_yields_every_item_in_order_one_ahead() -> None:
    made: list[int] = []
    seen: list[tuple[int, int]] = []

    def produce() -> object:
        for i in range(6):
            made.append(i)
            yield i

    for item in parallel.prefetch(produce()):
        seen.append((item, len(made)))
    assert [i for i, _ in seen] == list(range(6))
    if parallel.WORKERS > 1:  # when the caller holds item i, item i + 1 is made or being made, no further
        assert all(i + 1 <= n <= i + 2 for i, n in seen)
    assert list(parallel.prefetch([])) == []


def test_inside_a_task_everything_runs_serially_in_that_thread() -> None:
    def made_in() -> object:
        for _ in range(3):
            yield threading.current_thread().name

    def inner(_: int) -> tuple[str, ...]:
        me = threading.current_thread().name
        return (
            parallel.start(lambda: threading.current_thread().name).result(),
            *parallel.prefetch(made_in()),
            *parallel.tasks(lambda _: threading.current_thread().name, range(3)),
            me,
        )

    for names in parallel.tasks(inner, range(2)):
        assert len(set(names)) == 1
