"""Tests for a world's daily decision (`decide`) and its ranged evaluation (`evaluate_world`).

`decide` is exercised table-driven on hand-made snapshots of a simple policy; `evaluate_world` on a small
synthetic returns frame whose KPIs come from the real `asof_kpis`.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import pytest

from quantlab.backtest.kpis import asof_kpis
from quantlab.calendar import sessions, sessions_between, shift_sessions
from quantlab.schemas import TABLES
from quantlab.world.decide import Override, Plan, Snapshot, State, decide
from quantlab.world.evaluate import (
    evaluate_world,
    overrides_by_day,
    previous_states,
    snapshot_doc,
    snapshot_from_doc,
)
from quantlab.world.spec import FAMILIES, WorldSpec

D = dt.date(2024, 3, 1)  # a Friday session
NAN = math.nan

BASE: dict[str, Any] = {
    "id": "w",
    "owners": ["me"],
    "strategies": {"tags": ["x"]},
    "windows": {"short": "20d", "mid": "60d", "long": "252d"},
    "data_currency": {"max_lag": "3d", "min_history": "100d"},
    "stages": {
        "backtest": {"gates": "sharpe_long >= 0.5"},
        "paper": {"gates": "sharpe_paper >= 0", "min_days": "5d"},
    },
    "selection": {
        "score": "sharpe_mid",
        "topk": {"total": 2},
        "hysteresis": {"promote_after": 3, "demote_after": 2, "min_dwell": "5d"},
    },
}


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "stages":
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def world(**over: Any) -> WorldSpec:
    return WorldSpec.model_validate(_merge(BASE, over))


def ago(n: int) -> dt.date:
    """The session n sessions before D."""
    return shift_sessions(D, -n)


@dataclass(frozen=True)
class S:
    """One strategy of a snapshot: its side, metric overrides and previous state."""

    id: str
    side: str = "long"
    metrics: dict[str, float] = field(default_factory=dict)
    prev: State = State()


DEFAULT_METRICS = {"sample_days": 300.0, "sharpe_long": 1.0, "sharpe_mid": 1.0}


def snapshot(
    w: WorldSpec,
    strats: list[S],
    *,
    lag: int = 0,
    corr: dict[tuple[str, str], float] | None = None,
    date: dt.date = D,
) -> Snapshot:
    n = len(strats)
    metrics = {name: np.full(n, NAN) for name in w.metric_names}
    for i, s in enumerate(strats):
        values = dict(DEFAULT_METRICS)
        if s.prev.stage in ("paper", "live") and s.prev.stage_since is not None:
            values["paper_days"] = float(sessions_between(s.prev.stage_since, date))
        values.update(s.metrics)
        for name, v in values.items():
            metrics[name][i] = v
    metrics["data_lag"] = np.full(n, float(lag))
    matrix = None
    if corr is not None:
        ids = [s.id for s in strats]
        matrix = np.full((n, n), NAN)
        np.fill_diagonal(matrix, 1.0)
        for (a, b), v in corr.items():
            matrix[ids.index(a), ids.index(b)] = matrix[ids.index(b), ids.index(a)] = v
    return Snapshot(
        w,
        date,
        tuple(s.id for s in strats),
        tuple(s.side for s in strats),
        metrics,
        lag,
        matrix,
        tuple(s.prev for s in strats),
    )


def run(w: WorldSpec, strats: list[S], **kw: Any) -> tuple[Plan, dict[str, dict[str, Any]]]:
    plan = decide(snapshot(w, strats, **kw))
    ids = [s.id for s in strats]
    out = {
        sid: {"selected": plan.selected[i], "code": plan.reason_codes[i], "state": plan.states[i]}
        for i, sid in enumerate(ids)
    }
    return plan, out


def rule(plan: Plan, strategy: str, name: str) -> Any:
    found = [r for r in plan.rules if r.strategy == strategy and r.rule == name]
    assert len(found) == 1, f"expected one '{name}' row for {strategy}, got {found}"
    return found[0]


# ------------------------------------------------------------------------------------ table of cases


@dataclass(frozen=True)
class Case:
    name: str
    strats: list[S]
    world: dict[str, Any] = field(default_factory=dict)
    lag: int = 0
    corr: dict[tuple[str, str], float] | None = None
    selected: tuple[str, ...] = ()
    codes: dict[str, str] = field(default_factory=dict)
    states: dict[str, State] = field(default_factory=dict)


CORR_WORLD = {"selection": {"correlation": {"max_pairwise": 0.8, "window": "mid"}}}
SIDE_WORLD = {"selection": {"topk": {"total": 2, "by_side": {"long": 1}}}}
AND_GATE = {
    "stages": {
        "backtest": {"gates": {"and": ["sharpe_long >= 0.5", "max_dd_long <= 0.2"]}},
        "paper": BASE["stages"]["paper"],
    }
}

CASES = [
    # thresholds: equality passes (>= and <=), a hair beyond fails
    Case(
        "gate_ge_equality",
        [S("a", metrics={"sharpe_long": 0.5}), S("b", metrics={"sharpe_long": 0.4999999})],
        selected=("a",),
        codes={"a": "selected", "b": "gate_failed"},
    ),
    Case(
        "gate_le_equality",
        [S("a", metrics={"max_dd_long": 0.2}), S("b", metrics={"max_dd_long": 0.2000001})],
        world=AND_GATE,
        selected=("a",),
        codes={"a": "selected", "b": "gate_failed"},
    ),
    # top-K in score order, ties by strategy id whatever the input order
    Case(
        "topk_by_score",
        [
            S("a", metrics={"sharpe_mid": 1}),
            S("b", metrics={"sharpe_mid": 3}),
            S("c", metrics={"sharpe_mid": 2}),
        ],
        selected=("b", "c"),
        codes={"a": "not_in_topk", "b": "selected", "c": "selected"},
    ),
    Case(
        "topk_ties_by_id",
        [S("c"), S("a"), S("b")],
        selected=("a", "b"),
        codes={"a": "selected", "b": "selected", "c": "not_in_topk"},
    ),
    Case(
        "topk_tie_at_cutoff",
        [S("z", metrics={"sharpe_mid": 2}), S("m"), S("k")],
        selected=("k", "z"),
        codes={"m": "not_in_topk"},
    ),
    # correlation: the second of a correlated pair is skipped and the next candidate taken
    Case(
        "correlation_skips_second",
        [
            S("a", metrics={"sharpe_mid": 3}),
            S("b", metrics={"sharpe_mid": 2}),
            S("c", metrics={"sharpe_mid": 1}),
        ],
        world=CORR_WORLD,
        corr={("a", "b"): 0.9, ("a", "c"): 0.2, ("b", "c"): 0.1},
        selected=("a", "c"),
        codes={"a": "selected", "b": "correlated", "c": "selected"},
    ),
    Case(
        "correlation_at_limit_is_allowed",
        [
            S("a", metrics={"sharpe_mid": 3}),
            S("b", metrics={"sharpe_mid": 2}),
            S("c", metrics={"sharpe_mid": 1}),
        ],
        world=CORR_WORLD,
        corr={("a", "b"): 0.8, ("a", "c"): 0.2, ("b", "c"): 0.1},
        selected=("a", "b"),
        codes={"c": "not_in_topk"},
    ),
    Case(
        "correlation_unknown_is_no_conflict",
        [S("a", metrics={"sharpe_mid": 3}), S("b", metrics={"sharpe_mid": 2})],
        world=CORR_WORLD,
        corr={},
        selected=("a", "b"),
    ),
    Case(
        "correlation_against_any_selected",
        [
            S("a", metrics={"sharpe_mid": 3}),
            S("b", metrics={"sharpe_mid": 2}),
            S("c", metrics={"sharpe_mid": 1}),
            S("d", metrics={"sharpe_mid": 0}),
        ],
        world=_merge(CORR_WORLD, {"selection": {"topk": {"total": 3}}}),
        corr={
            ("a", "b"): 0.1,
            ("a", "c"): 0.0,
            ("b", "c"): 0.95,
            ("a", "d"): 0.0,
            ("b", "d"): 0.0,
            ("c", "d"): 0.0,
        },
        selected=("a", "b", "d"),
        codes={"c": "correlated", "d": "selected"},
    ),
    # side quotas
    Case(
        "by_side_quota",
        [
            S("a", metrics={"sharpe_mid": 3}),
            S("b", metrics={"sharpe_mid": 2}),
            S("c", side="long_short", metrics={"sharpe_mid": 1}),
        ],
        world=SIDE_WORLD,
        selected=("a", "c"),
        codes={"b": "side_quota_full", "c": "selected"},
    ),
    Case(
        "by_side_zero_quota",
        [S("a", side="long_short", metrics={"sharpe_mid": 5}), S("b"), S("c")],
        world={"selection": {"topk": {"total": 2, "by_side": {"long_short": 0}}}},
        selected=("b", "c"),
        codes={"a": "side_quota_full"},
    ),
    # sample sufficiency
    Case(
        "min_history_boundary",
        [S("a", metrics={"sample_days": 100}), S("b", metrics={"sample_days": 99})],
        selected=("a",),
        codes={"b": "insufficient_history"},
        states={"b": State(fail_streak=1)},
    ),
    # hysteresis and promotion backtest -> paper
    Case(
        "streak_builds",
        [S("a", prev=State(pass_streak=1))],
        selected=("a",),
        codes={"a": "selected"},
        states={"a": State("backtest", None, 2, 0)},
    ),
    Case(
        "promote_after_reached",
        [S("a", prev=State(pass_streak=2, fail_streak=0))],
        selected=("a",),
        codes={"a": "promoted_to_paper"},
        states={"a": State("paper", D, 0, 0)},
    ),
    Case(
        "min_dwell_blocks_promotion",
        [S("a", prev=State("backtest", ago(4), 2, 0))],
        selected=("a",),
        codes={"a": "selected"},
        states={"a": State("backtest", ago(4), 3, 0)},
    ),
    Case(
        "min_dwell_exactly_met",
        [S("a", prev=State("backtest", ago(5), 2, 0))],
        selected=("a",),
        codes={"a": "promoted_to_paper"},
        states={"a": State("paper", D, 0, 0)},
    ),
    Case(
        "failure_resets_pass_streak",
        [S("a", metrics={"sharpe_long": 0.1}, prev=State(pass_streak=2))],
        codes={"a": "gate_failed"},
        states={"a": State("backtest", None, 0, 1)},
    ),
    Case(
        "backtest_is_never_demoted",
        [S("a", metrics={"sharpe_long": 0.1}, prev=State("backtest", ago(50), 0, 7))],
        codes={"a": "gate_failed"},
        states={"a": State("backtest", ago(50), 0, 8)},
    ),
    Case(
        "not_selected_counts_as_failure",
        [S("a", metrics={"sharpe_mid": 2}), S("b", prev=State(pass_streak=2))],
        world={"selection": {"topk": {"total": 1}}},
        selected=("a",),
        codes={"b": "not_in_topk"},
        states={"b": State("backtest", None, 0, 1)},
    ),
    # paper: pending until min_days, streaks unchanged, not selectable even with the best score
    Case(
        "paper_pending",
        [S("a", metrics={"sharpe_mid": 9, "sharpe_paper": 1}, prev=State("paper", ago(4), 1, 1)), S("b")],
        selected=("b",),
        codes={"a": "stage_pending"},
        states={"a": State("paper", ago(4), 1, 1)},
    ),
    Case(
        "paper_to_live",
        [S("a", metrics={"sharpe_paper": 0.0}, prev=State("paper", ago(5), 2, 0))],
        selected=("a",),
        codes={"a": "promoted_to_live"},
        states={"a": State("live", D, 0, 0)},
    ),
    Case(
        "paper_uses_paper_gates",
        [S("a", metrics={"sharpe_long": -1, "sharpe_paper": 0.3}, prev=State("paper", ago(8), 0, 0))],
        selected=("a",),
        codes={"a": "selected"},
        states={"a": State("paper", ago(8), 1, 0)},
    ),
    Case(
        "paper_to_backtest",
        [S("a", metrics={"sharpe_paper": -0.1}, prev=State("paper", ago(10), 0, 1))],
        codes={"a": "demoted_to_backtest"},
        states={"a": State("backtest", D, 0, 0)},
    ),
    Case(
        "paper_demotion_waits_for_dwell",
        [
            S("a", metrics={"sharpe_paper": -0.1}, prev=State("paper", ago(5), 0, 1)),
            S("b", metrics={"sharpe_paper": -0.1}, prev=State("paper", ago(6), 0, 0)),
        ],
        world={"selection": {"hysteresis": {"promote_after": 3, "demote_after": 2, "min_dwell": "6d"}}},
        codes={"a": "gate_failed", "b": "gate_failed"},
        states={"a": State("paper", ago(5), 0, 2), "b": State("paper", ago(6), 0, 1)},
    ),
    # live: gates fall back to backtest's; demoted to inactive after demote_after failures
    Case(
        "live_stays_live",
        [S("a", prev=State("live", ago(30), 4, 0))],
        selected=("a",),
        codes={"a": "selected"},
        states={"a": State("live", ago(30), 5, 0)},
    ),
    Case(
        "live_first_failure",
        [S("a", metrics={"sharpe_long": 0.4}, prev=State("live", ago(30), 4, 0))],
        codes={"a": "gate_failed"},
        states={"a": State("live", ago(30), 0, 1)},
    ),
    Case(
        "live_to_inactive",
        [S("a", metrics={"sharpe_long": 0.4}, prev=State("live", ago(30), 0, 1))],
        codes={"a": "demoted_to_inactive"},
        states={"a": State("inactive", D, 0, 0)},
    ),
    Case(
        "inactive_to_paper",
        [S("a", prev=State("inactive", ago(10), 2, 0))],
        selected=("a",),
        codes={"a": "promoted_to_paper"},
        states={"a": State("paper", D, 0, 0)},
    ),
    # data currency: at the limit is fine, beyond it freezes every state
    Case(
        "lag_at_limit",
        [S("a", prev=State(pass_streak=2))],
        lag=3,
        selected=("a",),
        codes={"a": "promoted_to_paper"},
        states={"a": State("paper", D, 0, 0)},
    ),
    Case(
        "stale_data_freezes",
        [
            S("a", prev=State(pass_streak=2)),
            S("b", metrics={"sharpe_long": 0}, prev=State("live", ago(30), 0, 1)),
            S("c", metrics={"sharpe_paper": 1}, prev=State("paper", ago(9), 2, 0)),
        ],
        lag=4,
        selected=("a", "c"),
        codes={"a": "evaluate_only", "b": "evaluate_only", "c": "evaluate_only"},
        states={
            "a": State(pass_streak=2),
            "b": State("live", ago(30), 0, 1),
            "c": State("paper", ago(9), 2, 0),
        },
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_decide_table(case: Case) -> None:
    w = world(**case.world)
    plan, out = run(w, case.strats, lag=case.lag, corr=case.corr)
    assert tuple(sorted(sid for sid, o in out.items() if o["selected"])) == case.selected
    for sid, code in case.codes.items():
        assert out[sid]["code"] == code, sid
    for sid, state in case.states.items():
        assert out[sid]["state"] == state, sid
    assert plan.evaluate_only == (case.lag > 3)
    _check_rule_rows(w, plan, case.strats)


def _check_rule_rows(w: WorldSpec, plan: Plan, strats: list[S]) -> None:
    """Invariants of the rule rows every plan must satisfy."""
    ids = [s.id for s in strats]
    assert len(plan.reason_codes) == len(ids) and all(plan.reason_codes)
    assert {r.family for r in plan.rules} <= set(FAMILIES)
    assert {r.status for r in plan.rules} <= {"pass", "fail", "warn", "skip"}
    assert all(r.reason and r.reason_code for r in plan.rules)
    world_rows = [(r.rule, r.family) for r in plan.rules if r.strategy == "*"]
    assert world_rows == [("data_currency", "data_currency"), ("world_selection", "selection")]
    for s in strats:
        families = {r.family for r in plan.rules if r.strategy == s.id}
        assert {"sample", "gates", "selection", "lifecycle"} <= families, s.id
        lifecycle = rule(plan, s.id, "lifecycle")
        assert lifecycle.reason_code == plan.reason_codes[ids.index(s.id)]
        assert lifecycle.stage == s.prev.stage
        assert rule(plan, s.id, f"gates_{s.prev.stage}").family == "gates"
    names = [(r.strategy, r.rule) for r in plan.rules]
    assert len(names) == len(set(names)), "one row per (strategy, rule)"
    n_live = sum(st.stage == "live" for st in plan.states)
    world_sel = rule(plan, "*", "world_selection")
    assert (world_sel.status, world_sel.reason_code) == (
        ("pass", "has_live") if n_live else ("warn", "no_live_strategy")
    )


# ------------------------------------------------------------------------------------- rule row details


def test_correlation_rows_name_the_conflict() -> None:
    w = world(**CORR_WORLD)
    strats = [
        S("a", metrics={"sharpe_mid": 3}),
        S("b", metrics={"sharpe_mid": 2}),
        S("c", metrics={"sharpe_mid": 1}),
    ]
    plan, _ = run(w, strats, corr={("a", "b"): 0.9, ("a", "c"): 0.2, ("b", "c"): 0.1})
    row = rule(plan, "b", "correlation")
    assert (row.family, row.status, row.reason_code) == ("correlation", "fail", "correlated")
    assert row.details == {"with": "a", "correlation": 0.9}
    assert "0.900" in row.reason and "a" in row.reason
    assert rule(plan, "a", "correlation").status == "pass"
    assert rule(plan, "c", "correlation").status == "pass"
    # without a correlation policy there are no correlation rows
    plan, _ = run(world(), strats, corr={("a", "b"): 0.9})
    assert not [r for r in plan.rules if r.family == "correlation"]


def test_stale_data_rows() -> None:
    w = world()
    strats = [S("a", prev=State(pass_streak=2)), S("b", metrics={"sharpe_long": 0.1})]
    plan, _ = run(w, strats, lag=4)
    dc = rule(plan, "*", "data_currency")
    assert (dc.family, dc.status, dc.reason_code, dc.stage) == ("data_currency", "fail", "stale_data", "*")
    assert dc.details == {"data_lag": 4, "max_lag": 3}
    assert "evaluate-only" in dc.reason
    # every rule is still evaluated and recorded
    assert rule(plan, "a", "gates_backtest").status == "pass"
    assert rule(plan, "b", "gates_backtest").status == "fail"
    assert rule(plan, "a", "selection").reason_code == "selected"
    assert plan.states == (State(pass_streak=2), State())
    plan, _ = run(w, strats, lag=3)
    dc = rule(plan, "*", "data_currency")
    assert (dc.status, dc.reason_code) == ("pass", "data_current")


def test_pending_and_history_rows_are_skips() -> None:
    w = world()
    strats = [S("a", prev=State("paper", ago(2), 1, 0)), S("b", metrics={"sample_days": 10})]
    plan, _ = run(w, strats)
    sample = rule(plan, "a", "sample")
    assert (sample.status, sample.reason_code, sample.stage) == ("pass", "stage_pending", "paper")
    assert sample.details == {"stage_days": 2, "min_days": 5}
    assert rule(plan, "a", "gates_paper").status == "skip"
    assert rule(plan, "a", "gates_paper").reason_code == "not_evaluated"
    assert (rule(plan, "a", "selection").status, rule(plan, "a", "selection").reason_code) == (
        "skip",
        "stage_pending",
    )
    sample = rule(plan, "b", "sample")
    assert (sample.status, sample.reason_code) == ("fail", "insufficient_history")
    assert rule(plan, "b", "gates_backtest").status == "skip"
    assert rule(plan, "b", "selection").status == "skip"


def test_lifecycle_rows() -> None:
    w = world()
    strats = [
        S("a", metrics={"sharpe_long": 0.1}, prev=State("live", ago(30), 0, 1)),
        S("b", prev=State("live", ago(30), 0, 0)),
        S("c", prev=State(pass_streak=2)),
    ]
    plan, _ = run(w, strats)
    a, b, c = (rule(plan, s, "lifecycle") for s in "abc")
    assert (a.status, a.reason_code, a.details) == (
        "fail",
        "demoted_to_inactive",
        {"from": "live", "to": "inactive"},
    )
    assert (b.status, b.reason_code, b.details) == ("pass", "selected", {"from": "live", "to": "live"})
    assert (c.status, c.reason_code, c.details) == (
        "pass",
        "promoted_to_paper",
        {"from": "backtest", "to": "paper"},
    )
    assert rule(plan, "*", "world_selection").reason_code == "has_live"


def test_gate_rows_carry_metrics_and_failed_leaves() -> None:
    w = world(**AND_GATE)
    plan, _ = run(w, [S("a", metrics={"sharpe_long": 0.3, "max_dd_long": 0.5})])
    row = rule(plan, "a", "gates_backtest")
    assert (row.status, row.reason_code) == ("fail", "gate_failed")
    assert "sharpe_long >= 0.5" in row.reason and "max_dd_long <= 0.2" in row.reason
    assert row.details == {"metrics": {"max_dd_long": 0.5, "sharpe_long": 0.3}}
    assert rule(plan, "a", "selection").details == {"score": 1.0, "side": "long"}


# ------------------------------------------------------------------------------------- missing metrics


@pytest.mark.parametrize(
    ("policy", "status", "eligible"),
    [("fail", "fail", False), ("warn", "warn", True), ("ignore", "pass", True)],
)
def test_missing_gate_metric(policy: str, status: str, eligible: bool) -> None:
    w = world(on_missing_metric=policy)
    plan, out = run(w, [S("a", metrics={"sharpe_long": NAN}), S("b", metrics={"sharpe_long": 0.1})])
    row = rule(plan, "a", "gates_backtest")
    assert row.status == status
    assert row.reason_code == ("gates_passed" if policy == "ignore" else "missing_metric")
    assert f"on_missing_metric={policy}" in row.reason
    assert row.details == {"metrics": {"sharpe_long": None}}
    assert out["a"]["selected"] is eligible
    assert out["a"]["code"] == ("selected" if eligible else "missing_metric")
    assert out["a"]["state"] == (State(pass_streak=1) if eligible else State(fail_streak=1))
    # a present but failing metric is a plain failure whatever the policy
    assert out["b"]["code"] == "gate_failed" and not out["b"]["selected"]


@pytest.mark.parametrize("policy", ["warn", "ignore"])
def test_missing_score_ranks_last(policy: str) -> None:
    w = world(on_missing_metric=policy, selection={"topk": {"total": 1}})
    plan, out = run(w, [S("a", metrics={"sharpe_mid": NAN}), S("b", metrics={"sharpe_mid": -5.0})])
    assert out["b"]["selected"] and out["a"]["code"] == "not_in_topk"
    assert math.isnan(plan.scores[0]) and plan.scores[1] == -5.0
    assert rule(plan, "a", "selection").details["score"] is None
    # alone it is still selectable
    _, out = run(w, [S("a", metrics={"sharpe_mid": NAN})])
    assert out["a"]["selected"]


def test_missing_score_under_fail_is_not_eligible() -> None:
    w = world(on_missing_metric="fail")
    _, out = run(w, [S("a", metrics={"sharpe_mid": NAN}), S("b")])
    assert not out["a"]["selected"] and out["b"]["selected"]
    assert out["a"]["state"] == State(fail_streak=1)


def test_missing_score_under_fail_has_missing_metric_code() -> None:
    w = world(on_missing_metric="fail")
    plan, out = run(w, [S("a", metrics={"sharpe_mid": NAN}), S("b")])
    assert rule(plan, "a", "gates_backtest").status == "pass"  # the gates themselves pass
    assert out["a"]["code"] == "missing_metric"


@pytest.mark.parametrize(
    ("policy", "status", "eligible"),
    [("fail", "fail", False), ("warn", "warn", True), ("ignore", "pass", True)],
)
def test_missing_metric_under_not_gate(policy: str, status: str, eligible: bool) -> None:
    """A missing metric inside `not` follows the policy too (it is not negated into a pass under `fail`)."""
    stages = {"backtest": {"gates": {"not": "max_dd_long > 0.5"}}, "paper": BASE["stages"]["paper"]}
    w = world(stages=stages, on_missing_metric=policy)
    strats = [
        S("a", metrics={"max_dd_long": NAN}),
        S("b", metrics={"max_dd_long": 0.1}),
        S("c", metrics={"max_dd_long": 0.6}),
    ]
    plan, out = run(w, strats)
    assert out["b"]["selected"] and not out["c"]["selected"]
    assert out["c"]["code"] == "gate_failed"
    assert rule(plan, "a", "gates_backtest").status == status
    assert out["a"]["selected"] is eligible
    assert out["a"]["code"] == ("selected" if eligible else "missing_metric")


def test_paper_without_paper_days_is_pending() -> None:
    w = world()
    plan, out = run(w, [S("a", metrics={"paper_days": NAN}, prev=State("paper", ago(2), 1, 0))])
    assert out["a"]["code"] == "stage_pending"
    assert out["a"]["state"] == State("paper", ago(2), 1, 0)
    assert rule(plan, "a", "sample").details == {"stage_days": 0, "min_days": 5}


def test_decide_is_pure() -> None:
    w = world(**CORR_WORLD)
    strats = [
        S("a", metrics={"sharpe_mid": 3}),
        S("b", metrics={"sharpe_mid": 2}, prev=State("paper", ago(9), 2, 0)),
        S("c", metrics={"sharpe_mid": 1}),
    ]
    snap = snapshot(w, strats, corr={("a", "b"): 0.5})
    before = {k: v.copy() for k, v in snap.metrics.items()}
    first, second = decide(snap), decide(snap)
    assert first == second
    assert all(np.array_equal(before[k], snap.metrics[k], equal_nan=True) for k in before)


# ---------------------------------------------------------------------------------------- evaluate_world

IDS = ["a", "b", "c"]
NO_TRADES = pl.DataFrame(schema={"date": pl.Date, "strategy": pl.String, "n": pl.Int64})
SIDES = ["long", "long", "long_short"]


def _eval_world(min_dwell: str) -> WorldSpec:
    return WorldSpec.model_validate(
        {
            "id": "w",
            "owners": ["me"],
            "strategies": {"ids": IDS},
            "windows": {"short": "20d", "mid": "60d", "long": "252d"},
            "data_currency": {"max_lag": "3d", "min_history": "100d"},
            "stages": {
                "backtest": {"gates": "sharpe_short >= 0"},
                "paper": {"gates": "sharpe_paper >= -1", "min_days": "3d"},
            },
            "selection": {
                "score": "sharpe_mid",
                "topk": {"total": 2, "by_side": {"long": 1}},
                "correlation": {"max_pairwise": 0.9, "window": "short"},
                "hysteresis": {"promote_after": 2, "demote_after": 2, "min_dwell": min_dwell},
            },
        }
    )


@pytest.fixture(scope="module")
def synthetic_history() -> dict[str, Any]:
    days = sessions(dt.date(2023, 1, 1), dt.date(2023, 12, 29))
    rng = np.random.default_rng(3)
    rows = []
    for j, sid in enumerate(IDS):
        for d, r in zip(days, rng.normal(0.0008 * (j - 0.5), 0.01, len(days)), strict=True):
            rows.append(
                {
                    "date": d,
                    "strategy": sid,
                    "net": float(r),
                    "turnover": 0.1,
                    "long_ret": float(r),
                    "short_ret": 0.0,
                }
            )
    returns = pl.DataFrame(rows)
    window = days[-30:]
    bars = [d for d in days if d != days[-12]]  # one missing bar day: a lag of 1 there, still current
    return {
        "returns": returns,
        "kpis": asof_kpis(returns, NO_TRADES, window[0], window[-1]),
        "days": window,
        "bars": bars,
    }


def _ranged_and_chunked(h: dict[str, Any], w: WorldSpec, cuts: list[int]) -> tuple[pl.DataFrame, ...]:
    days = h["days"]
    start = tuple(State() for _ in IDS)
    dec, rules, *_ = evaluate_world(
        w, IDS, SIDES, h["kpis"], h["returns"], h["bars"], start, days[0], days[-1]
    )
    parts_d, parts_r, prev = [], [], start
    for a, b in zip([0, *cuts], [*cuts, len(days)], strict=True):
        d, r, *_ = evaluate_world(
            w, IDS, SIDES, h["kpis"], h["returns"], h["bars"], prev, days[a], days[b - 1]
        )
        parts_d.append(d)
        parts_r.append(r)
        prev = previous_states(d.filter(pl.col("date") == days[b - 1]), IDS)
    return dec, rules, pl.concat(parts_d), pl.concat(parts_r)


def test_evaluate_world_rows_are_valid_and_eventful(synthetic_history: dict[str, Any]) -> None:
    w = _eval_world("0d")
    h = synthetic_history
    days = h["days"]
    dec, rules, plans, *_ = evaluate_world(
        w, IDS, SIDES, h["kpis"], h["returns"], h["bars"], tuple(State() for _ in IDS), days[0], days[-1]
    )
    TABLES["world_decisions"].schema.validate(dec)
    TABLES["rule_results"].schema.validate(rules)
    assert dec.height == 30 * len(IDS) and len(plans) == 30
    assert dec.get_column("date").unique().sort().to_list() == days
    codes = set(dec.get_column("reason_code"))
    assert {"promoted_to_paper", "selected"} <= codes  # the scenario exercises the lifecycle
    assert codes & {"demoted_to_backtest", "demoted_to_inactive"}
    assert not dec.get_column("evaluate_only").any()
    assert set(rules.get_column("family")) <= set(FAMILIES)
    assert rules.filter(pl.col("strategy") == "*").height == 2 * 30


@pytest.mark.parametrize("min_dwell", ["0d", "3d"])
@pytest.mark.parametrize(
    "cuts", [[10, 20], [1, 2, 29], [1, 15], [7, 19]], ids=lambda c: "cuts" + "-".join(map(str, c))
)
def test_ranged_evaluation_equals_chunked(
    synthetic_history: dict[str, Any], cuts: list[int], min_dwell: str
) -> None:
    """A ranged run equals the same days run in chunks chained through `previous_states`, row for row."""
    dec, rules, dec_c, rules_c = _ranged_and_chunked(synthetic_history, _eval_world(min_dwell), cuts)
    assert dec.select("date", "strategy", "stage", "reason_code").equals(
        dec_c.select("date", "strategy", "stage", "reason_code")
    )
    assert dec.equals(dec_c)  # every column, stage_since and input_hash included
    assert rules.equals(rules_c)
    assert dec.filter(pl.col("stage") != "backtest").height > 0  # the chain carries real transitions
    # a strategy that never left backtest has no stage_since; one that moved has the day it moved
    never = dec.filter(pl.col("stage") == "backtest").filter(pl.col("stage_since").is_null())
    moved = dec.filter(pl.col("stage_since").is_not_null())
    assert never.height > 0
    assert (moved.get_column("stage_since") <= moved.get_column("date")).all()


@pytest.mark.parametrize("policy", ["warn", "ignore"])
def test_skipped_comparison_does_not_decide_an_or(policy: str) -> None:
    """Under warn/ignore a comparison over a missing metric is skipped: the `or` is decided by the others."""
    gates = {"or": ["max_dd_long <= 0.2", "sharpe_long >= 2"]}
    w = world(
        stages={"backtest": {"gates": gates}, "paper": BASE["stages"]["paper"]}, on_missing_metric=policy
    )
    strats = [
        S("a", metrics={"max_dd_long": NAN, "sharpe_long": 1.0}),  # skipped or failing -> fails
        S("b", metrics={"max_dd_long": NAN, "sharpe_long": 3.0}),  # skipped or passing -> passes
        S("c", metrics={"max_dd_long": NAN, "sharpe_long": NAN}),  # all skipped -> passes
    ]
    _, out = run(w, strats)
    assert out["a"]["code"] == "missing_metric" and not out["a"]["selected"]
    assert out["b"]["selected"] and out["c"]["selected"]


# --- overrides ---------------------------------------------------------------------------------------------


def _with_overrides(snap: Snapshot, **actions: str) -> Snapshot:
    from dataclasses import replace

    return replace(
        snap,
        overrides={
            sid: Override(a, "alice", f"desk call on {sid}", f"id-{sid}", None) for sid, a in actions.items()
        },
    )


def test_overrides_force_and_freeze_even_when_data_is_stale() -> None:
    w = world()
    strats = [
        S("bad", metrics={"sharpe_long": -1.0}),  # fails its gates: forced live anyway
        S("good", prev=State("live", ago(30), 4, 0)),  # would stay live: forced inactive
        S("held", metrics={"sharpe_long": -1.0}, prev=State("paper", ago(10), 2, 1)),  # would be counted
    ]
    for lag in (0, 10):  # 10 > max_lag 3: evaluate-only, yet the desk's overrides apply
        plan = decide(
            _with_overrides(
                snapshot(w, strats, lag=lag), bad="force_active", good="force_inactive", held="freeze"
            )
        )
        assert plan.states[0] == State("live", D) and plan.selected[0]
        assert plan.states[1] == State("inactive", D) and not plan.selected[1]
        assert plan.states[2] == State("paper", ago(10), 2, 1)
        assert plan.reason_codes == ("override_force_active", "override_force_inactive", "override_freeze")
        rows = [r for r in plan.rules if r.rule == "override"]
        assert [(r.strategy, r.status, r.family) for r in rows] == [
            ("bad", "warn", "lifecycle"),
            ("good", "warn", "lifecycle"),
            ("held", "warn", "lifecycle"),
        ]
        assert "by alice: desk call on bad" in rows[0].reason and rows[0].details["override_id"] == "id-bad"


def test_force_active_keeps_an_already_live_strategy_since_its_promotion() -> None:
    strats = [S("a", prev=State("live", ago(40), 9, 0))]
    plan = decide(_with_overrides(snapshot(world(), strats), a="force_active"))
    assert plan.states[0] == State("live", ago(40), 9, 0)


def test_overrides_in_force_by_day_latest_wins() -> None:
    days = sessions(dt.date(2024, 3, 1), dt.date(2024, 3, 8))
    rows = pl.DataFrame(
        {
            "override_id": ["o1", "o2"],
            "world": ["w", "w"],
            "strategy": ["a", "a"],
            "action": ["freeze", "force_inactive"],
            "reason": ["r1", "r2"],
            "actor": ["x", "y"],
            "created_at": [dt.datetime(2024, 3, 1, 9), dt.datetime(2024, 3, 2, 9)],
            "effective_from": [days[0], days[2]],
            "until": [None, days[3]],
        }
    )
    by_day = overrides_by_day(rows, days)
    assert [by_day[d]["a"].action for d in days] == [
        "freeze",
        "freeze",
        "force_inactive",
        "force_inactive",
        "freeze",
        "freeze",
    ]
    assert overrides_by_day(None, days) == {d: {} for d in days}


def test_snapshot_document_round_trips_exactly() -> None:
    w = world(selection={"correlation": {"max_pairwise": 0.5, "window": "short"}})
    strats = [S("a", metrics={"sharpe_mid": 0.1 + 0.2}), S("b", prev=State("paper", ago(7), 1, 0))]
    snap = _with_overrides(snapshot(w, strats, corr={("a", "b"): 1 / 3}), b="freeze")
    doc = json.loads(json.dumps(snapshot_doc(snap)))
    again = snapshot_from_doc(w, doc)
    assert snapshot_doc(again) == snapshot_doc(snap)
    assert decide(again) == decide(snap)


# --- the ranged evaluation equals `decide` day by day --------------------------------------------------------
#
# `evaluate_world` does not call `decide`: it vectorizes across dates what does not depend on the states and
# runs the sequential rest on arrays. These tests chain `decide` day by day on the snapshots it stored and
# require every row to be bit-identical (reason texts and details included), and check the stored inputs
# against independent reference computations (the metric panel, `metrics.sharpe_ratio` of the paper track,
# pairwise Pearson correlations).

RICH_IDS = [f"s{i}" for i in range(9)]
RICH_SIDES = ["long", "long", "long_short", "short", "long", "long_short", "long", "short", "long"]


def _rich_world(policy: str, variant: str = "vectorized") -> WorldSpec:
    """Gate trees with and/or/not and a paper-track comparison, quotas by side, a correlation limit,
    hysteresis with a dwell. The `per_day` variant adds what is evaluated day by day: a log comparison, a
    score reading the paper track, a `full` correlation window, no live profile (backtest's gates)."""
    stages: dict[str, Any] = {
        "backtest": {
            "gates": {
                "and": ["sharpe_mid >= 0.2", {"or": ["max_dd_long <= 0.15", {"not": "calmar_mid < 0.5"}]}]
            }
        },
        "paper": {"min_days": "5d", "gates": {"and": ["sharpe_paper >= -0.5", "max_dd_short <= 0.2"]}},
        "live": {"gates": ["sharpe_long >= 0", "max_dd_long <= 0.3"]},
    }
    score, window = "sharpe_mid - 0.5 * max_dd_mid", "short"
    if variant == "per_day":
        stages["paper"]["gates"] = {"and": ["sharpe_paper >= -0.5", "log(1 + max_dd_short) <= 0.18"]}
        del stages["live"]
        score, window = "sharpe_mid + where(sharpe_paper > 0, 0.1, 0) - paper_days / 1000", "full"
    return WorldSpec.model_validate(
        {
            "id": "rich",
            "owners": ["me"],
            "strategies": {"ids": RICH_IDS},
            "windows": {"short": "20d", "mid": "60d", "long": "126d"},
            "data_currency": {"max_lag": "3d", "min_history": "60d"},
            "stages": stages,
            "selection": {
                "score": score,
                "topk": {"total": 3, "by_side": {"long": 2, "short": 1, "long_short": 1}},
                "correlation": {"max_pairwise": 0.8, "window": window},
                "hysteresis": {"promote_after": 2, "demote_after": 2, "min_dwell": "3d"},
            },
            "on_missing_metric": policy,
        }
    )


@pytest.fixture(scope="module")
def rich_history() -> dict[str, Any]:
    """Nine strategies, 160 decided sessions after 300 of history: regimes (promotions and demotions), a
    near-duplicate pair (correlation conflicts), a late inception (short history, NaN in the windows), a
    flat stretch (no dispersion), KPI cells and rows missing, bar gaps (stale days) and overrides."""
    rng = np.random.default_rng(11)
    hist = sessions(dt.date(2021, 1, 1), dt.date(2023, 12, 29))[-460:]
    days = hist[-160:]
    n_t, n = len(hist), len(RICH_IDS)
    t = np.arange(n_t)[:, None]
    alpha = 0.0012 * np.sin(2 * np.pi * t / rng.uniform(40, 120, n) + rng.uniform(0, 6.3, n))
    net = (
        alpha + rng.normal(0, 0.007, (n_t, 2)) @ rng.normal(0, 0.8, (n, 2)).T + rng.normal(0, 0.006, (n_t, n))
    )
    net[:, 1] = 0.97 * net[:, 0] + 0.03 * net[:, 1]
    net[n_t - 90 : n_t - 50, 7] = 0.0
    net[n_t - 24 :, 5] = 0.0  # no dispersion in the short correlation window at the end
    start = np.zeros(n, dtype=int)
    start[8] = n_t - 130  # enters during the decided range
    rows = [
        {
            "date": hist[k],
            "strategy": sid,
            "net": float(net[k, j]),
            "turnover": 0.1,
            "long_ret": max(float(net[k, j]), 0.0),
            "short_ret": min(float(net[k, j]), 0.0),
        }
        for j, sid in enumerate(RICH_IDS)
        for k in range(start[j], n_t)
    ]
    returns = pl.DataFrame(rows)
    kpis = asof_kpis(returns, NO_TRADES, days[0], days[-1])
    # missing metrics: single cells, and whole (date, strategy) rows
    mask = pl.Series(rng.random(kpis.height) < 0.04)
    kpis = kpis.with_columns(
        [pl.when(mask).then(None).otherwise(pl.col(c)).alias(c) for c in ("sharpe", "max_dd", "calmar")]
    )
    kpis = kpis.filter(~((pl.col("strategy") == "s5") & pl.col("date").is_in(days[30:34])))
    bars = [d for k, d in enumerate(hist) if not (n_t - 120 <= k < n_t - 115 or n_t - 60 <= k < n_t - 58)]
    overrides = pl.DataFrame(
        {
            "override_id": [f"o{k}" for k in range(6)],
            "world": "rich",
            "strategy": ["s2", "s3", "s4", "s3", "ghost", "s6"],
            "action": [
                "freeze",
                "force_active",
                "force_inactive",
                "force_inactive",
                "freeze",
                "force_active",
            ],
            "reason": ["hold", "desk view", "vendor outage", "risk limit", "not a member", 'quote "x"'],
            "actor": ["alice", "bob", "carol", "dan", "eve", "frank"],
            "created_at": [dt.datetime(2023, 1, 1, k) for k in range(6)],
            "effective_from": [days[20], days[50], days[70], days[55], days[10], days[120]],
            "until": [days[30], days[60], None, days[57], None, days[121]],
        },
        schema_overrides={"until": pl.Date},
    )
    previous = tuple(
        {
            "s5": State("paper", hist[-163], 1, 0),
            "s6": State("live", hist[-200], 4, 0),
            "s0": State("inactive", hist[-170], 0, 2),
            "s7": State("paper", None, 0, 0),  # active without a stage_since: no paper track
        }.get(sid, State())
        for sid in RICH_IDS
    )
    return {
        "returns": returns,
        "kpis": kpis,
        "days": days,
        "bars": bars,
        "overrides": overrides,
        "previous": previous,
    }


def _reference_corr(window: np.ndarray) -> np.ndarray:
    """Pairwise Pearson correlation of columns over rows where both are present (NaN if < 3 rows or no
    dispersion: all values equal): the reference the correlations are checked against."""
    s = window.shape[1]
    out = np.full((s, s), np.nan)
    for i in range(s):
        for j in range(i + 1, s):
            ok = ~np.isnan(window[:, i]) & ~np.isnan(window[:, j])
            if ok.sum() >= 3:
                a, b = window[ok, i], window[ok, j]
                if np.ptp(a) > 0 and np.ptp(b) > 0:
                    out[i, j] = out[j, i] = float(np.corrcoef(a, b)[0, 1])
    return out


def _same_plan(a: Plan, b: Plan) -> bool:
    scores = np.array_equal(np.array(a.scores), np.array(b.scores), equal_nan=True)
    return scores and (a.date, a.states, a.selected, a.reason_codes, a.evaluate_only, a.rules) == (
        b.date,
        b.states,
        b.selected,
        b.reason_codes,
        b.evaluate_only,
        b.rules,
    )


def _evaluate_rich(h: dict[str, Any], w: WorldSpec, lo: int = 0, hi: int | None = None, previous: Any = None):
    days = h["days"][lo:hi]
    return evaluate_world(
        w,
        RICH_IDS,
        RICH_SIDES,
        h["kpis"],
        h["returns"],
        h["bars"],
        h["previous"] if previous is None else previous,
        days[0],
        days[-1],
        overrides=h["overrides"],
    )


@pytest.mark.parametrize(
    ("policy", "variant"),
    [("fail", "vectorized"), ("warn", "vectorized"), ("ignore", "vectorized"), ("warn", "per_day")],
)
def test_ranged_evaluation_equals_decide_day_by_day(
    rich_history: dict[str, Any], policy: str, variant: str
) -> None:
    import hashlib

    from quantlab import metrics
    from quantlab.backtest.kpis import KPI_WINDOWS, returns_matrix
    from quantlab.world.evaluate import _dumps, data_lags, metric_panel

    h = rich_history
    w = _rich_world(policy, variant)
    days = h["days"]
    ev = _evaluate_rich(h, w)
    dec, rules, snaps, hist = ev.decisions, ev.rules, ev.snapshots, ev.stage_history
    for name, frame in (
        ("world_decisions", dec),
        ("rule_results", rules),
        ("world_snapshots", snaps),
        ("stage_history", hist),
    ):
        TABLES[name].schema.validate(frame)
    assert len(ev.plans) == len(days) == snaps.height

    # references for the stored inputs
    panel = metric_panel(w, h["kpis"], RICH_IDS)
    ret_dates, ret_ids, net = returns_matrix(h["returns"], "net")
    assert ret_ids == RICH_IDS
    ret_pos = np.array(ret_dates, dtype="datetime64[D]")
    corr_len = KPI_WINDOWS[w.kpi_window(w.selection.correlation.window)]
    lags = data_lags(h["bars"], days)
    forced = overrides_by_day(h["overrides"], days)

    by_day = {
        name: frame.partition_by("date", as_dict=True, include_key=False)
        for name, frame in (("dec", dec.drop("world")), ("rules", rules.drop("world")))
    }
    panel_at = {(r["date"], r["strategy"]): r for r in panel.iter_rows(named=True)}
    state, moves = h["previous"], []
    for k, day in enumerate(days):
        day_dec = by_day["dec"][(day,)]
        input_hash, text = snaps.row(k)[2:]
        assert snaps.row(k)[1] == day and hashlib.sha256(text.encode()).hexdigest()[:16] == input_hash
        snap = snapshot_from_doc(w, json.loads(text))
        assert _dumps(snapshot_doc(snap)) == text  # the document is the canonical JSON of the snapshot
        assert snap.previous == state  # chained through `decide`'s own states
        plan = decide(snap)
        assert _same_plan(plan, ev.plans[k]), day

        # rows, exactly as the per-day reference writes them
        expected_rules = [
            (
                r.strategy,
                r.rule,
                r.family,
                r.stage,
                r.status,
                w.rule(r.family).severity,
                w.rule(r.family).owner,
                r.reason_code,
                r.reason,
                json.dumps(r.details, sort_keys=True),
            )
            for r in plan.rules
        ]
        got = by_day["rules"][(day,)].rows()
        assert got == expected_rules, day
        expected_dec = [
            (
                sid,
                w.policy_version,
                w.ruleset_hash,
                input_hash,
                st.stage,
                st.stage_since,
                st.pass_streak,
                st.fail_streak,
                plan.selected[i],
                None if math.isnan(plan.scores[i]) else plan.scores[i],
                plan.reason_codes[i],
                plan.evaluate_only,
            )
            for i, (sid, st) in enumerate(zip(RICH_IDS, plan.states, strict=True))
        ]
        assert day_dec.rows() == expected_dec, day
        moves += [
            (day, sid, a.stage, b.stage, plan.reason_codes[i])
            for i, (sid, a, b) in enumerate(zip(RICH_IDS, state, plan.states, strict=True))
            if a.stage != b.stage
        ]

        # the stored inputs against independent computations
        assert snap.data_lag == lags[day] and snap.overrides == forced[day]
        for name, values in snap.metrics.items():
            if name in ("paper_days", "sharpe_paper"):
                continue
            ref = np.array(
                [lags[day] if name == "data_lag" else panel_at.get((day, s), {}).get(name) for s in RICH_IDS],
                dtype=np.float64,
            )
            assert np.array_equal(values, ref, equal_nan=True), (day, name)
        upto = int(np.searchsorted(ret_pos, np.datetime64(day, "D"), side="right"))
        for i, s in enumerate(state):
            if s.stage in ("paper", "live") and s.stage_since is not None:
                since = int(np.searchsorted(ret_pos, np.datetime64(s.stage_since, "D"), side="right"))
                assert snap.metrics["paper_days"][i] == sessions_between(s.stage_since, day)
                sharpe = metrics.sharpe_ratio(net[since:upto, i])
                np.testing.assert_allclose(snap.metrics["sharpe_paper"][i], sharpe, rtol=1e-9, atol=1e-12)
            else:
                assert np.isnan(snap.metrics["paper_days"][i]) and np.isnan(snap.metrics["sharpe_paper"][i])
        reference = _reference_corr(net[max(0, upto - (corr_len or upto)) : upto])
        candidates = sorted(RICH_IDS.index(r.strategy) for r in plan.rules if r.rule == "correlation")
        held = ~np.isnan(np.diag(snap.correlation))
        assert list(np.flatnonzero(held)) == (candidates if len(candidates) >= 2 else [])
        block = np.ix_(candidates, candidates)
        off = ~np.eye(len(candidates), dtype=bool)
        np.testing.assert_allclose(snap.correlation[block][off], reference[block][off], rtol=1e-9, atol=1e-12)
        # the whole reference matrix (every strategy) decides the same: selection reads only these entries
        full = snapshot_from_doc(w, json.loads(text))
        object.__setattr__(full, "correlation", reference)
        assert _same_plan(decide(full), plan), day
        state = plan.states

    assert hist.select("date", "strategy", "from_stage", "to_stage", "reason_code").rows() == moves

    # the scenario is rich: every branch of the policy fires
    codes = set(dec.get_column("reason_code"))
    assert {"correlated", "side_quota_full", "not_in_topk", "selected", "insufficient_history"} <= codes
    assert {"stage_pending", "evaluate_only", "promoted_to_paper", "promoted_to_live"} <= codes
    assert {"override_freeze", "override_force_active", "override_force_inactive"} <= codes
    assert codes & {"demoted_to_backtest", "demoted_to_inactive"}
    gate_rows = rules.filter(pl.col("family") == "gates")
    assert "missing_metric" in set(gate_rows.get_column("reason_code")) or policy == "ignore"
    assert {"pass", "fail", "skip"} <= set(gate_rows.get_column("status"))
    if policy == "warn":
        assert "warn" in set(gate_rows.get_column("status"))
    assert rules.filter(pl.col("reason_code") == "correlated").height > 0
    assert rules.filter(pl.col("rule") == "override").height > 0


@pytest.mark.parametrize("cuts", [[1, 80], [37, 38, 121]], ids=lambda c: "cuts" + "-".join(map(str, c)))
def test_rich_ranged_evaluation_equals_chunked(rich_history: dict[str, Any], cuts: list[int]) -> None:
    """Chunks chained through `previous_states` give the very same rows, snapshots and hashes."""
    w = _rich_world("warn", "per_day")
    whole = _evaluate_rich(rich_history, w)
    parts, prev = [], None
    for lo, hi in zip([0, *cuts], [*cuts, len(rich_history["days"])], strict=True):
        part = _evaluate_rich(rich_history, w, lo, hi, prev)
        parts.append(part)
        prev = previous_states(
            part.decisions.filter(pl.col("date") == part.decisions["date"].max()), RICH_IDS
        )
    for k in (0, 1, 3, 4):  # decisions, rules, snapshots, stage history
        assert whole[k].equals(pl.concat([p[k] for p in parts])), k


def test_snapshot_document_keeps_any_correlation_matrix_and_reads_the_earlier_format() -> None:
    """A non-symmetric block or a NaN diagonal is stored whole; a document of the earlier format (every
    metric and the matrix as JSON lists) is still read, and re-decides the same."""
    w = world(selection={"correlation": {"max_pairwise": 0.5, "window": "short"}})
    strats = [S("a", metrics={"sharpe_mid": 3}), S("b", metrics={"sharpe_mid": 2}), S("c")]
    snap = snapshot(w, strats, corr={("a", "b"): 0.3})
    odd = snap.correlation.copy()
    odd[0, 1], odd[2, 2] = 0.7, np.nan  # a read 0.7, b reads 0.3; c knows nothing
    for matrix in (snap.correlation, odd):
        from dataclasses import replace

        one = replace(snap, correlation=matrix)
        doc = json.loads(json.dumps(snapshot_doc(one)))
        again = snapshot_from_doc(w, doc)
        assert np.array_equal(again.correlation, matrix, equal_nan=True)
        assert snapshot_doc(again) == doc
        assert decide(again) == decide(one)
    legacy = {
        "date": D.isoformat(),
        "strategies": ["a", "b", "c"],
        "sides": ["long", "long", "long"],
        "metrics": {k: [None if x != x else x for x in v.tolist()] for k, v in snap.metrics.items()},
        "data_lag": 0,
        "correlation": [[None if x != x else x for x in row] for row in odd.tolist()],
        "previous": [["backtest", None, 0, 0]] * 3,
        "overrides": {"b": ["freeze", "alice", "hold", "o1", None]},
    }
    old = snapshot_from_doc(w, legacy)
    assert np.array_equal(old.correlation, odd, equal_nan=True)
    assert old.overrides["b"] == Override("freeze", "alice", "hold", "o1", None)
    plan = decide(old)
    assert plan == decide(snapshot_from_doc(w, json.loads(json.dumps(snapshot_doc(old)))))
    assert plan.reason_codes == ("selected", "override_freeze", "not_in_topk")  # b reads 0.3 <= 0.5


def test_correlation_block_matches_the_pairwise_reference() -> None:
    """The correlations among the candidates: Pearson over the dates where both are present, NaN with fewer
    than 3 such dates or no dispersion, clipped to [-1, 1], exactly symmetric."""
    from quantlab.world.evaluate import _corr_block

    rng = np.random.default_rng(5)
    w = rng.normal(0.0, 0.01, (40, 6))
    w[:, 1] = w[:, 0]  # identical: 1, not a hair above
    w[:, 2] = 0.003  # no dispersion
    cases = {"complete": w}
    gappy = w.copy()
    gappy[:30, 3] = np.nan  # a late start
    gappy[5:9, 4] = np.nan  # a hole
    gappy[:38, 5] = np.nan  # 2 dates only
    cases["gappy"] = gappy
    cases["short"] = w[:2]
    for name, window in cases.items():
        with np.errstate(all="ignore"):
            got = _corr_block(np.ascontiguousarray(window.T))
        ref = _reference_corr(window)
        off = ~np.eye(window.shape[1], dtype=bool)
        np.testing.assert_allclose(got[off], ref[off], rtol=1e-12, atol=1e-14, err_msg=name)
        assert np.array_equal(got, got.T, equal_nan=True) and not (np.abs(got) > 1.0).any(), name
    with np.errstate(all="ignore"):
        same = _corr_block(np.ascontiguousarray(w.T))[0, 1]
    assert 1.0 - 1e-12 < same <= 1.0


def test_members_in_any_order_are_decided_like_decide(rich_history: dict[str, Any]) -> None:
    """Score ties (missing scores rank last, tied) go by strategy id whatever the members' order; no
    correlation limit nor quota also works."""
    h = rich_history
    spec = _rich_world("warn").model_dump(mode="json")
    ids, sides = RICH_IDS[::-1], RICH_SIDES[::-1]
    plain = {**spec, "selection": {**spec["selection"], "correlation": None, "topk": {"total": 2}}}
    for doc in ({**spec, "strategies": {"ids": ids}}, {**plain, "strategies": {"ids": ids}}):
        w = WorldSpec.model_validate(doc)
        days = h["days"]
        previous = tuple(State() for _ in ids)
        ev = evaluate_world(
            w,
            ids,
            sides,
            h["kpis"],
            h["returns"],
            h["bars"],
            previous,
            days[0],
            days[-1],
            overrides=h["overrides"],
        )
        state = previous
        for k, text in enumerate(ev.snapshots.get_column("snapshot")):
            snap = snapshot_from_doc(w, json.loads(text))
            assert snap.previous == state
            plan = decide(snap)
            assert _same_plan(plan, ev.plans[k]), days[k]
            state = plan.states
