"""`decide(snapshot) -> plan`: one world's decision for one date, a pure function of an immutable snapshot.

Order per date (vectorized across the world's strategies):
1. data currency: `data_lag > data_currency.max_lag` puts the world in evaluate-only mode — every rule is
   still evaluated and recorded, but no streak moves, no stage changes and the allocation stays frozen;
2. sample sufficiency: `sample_days >= min_history`; a strategy in `paper`/`live` must also have spent
   the stage's `min_days` (before that it is `pending`: not selectable, streaks unchanged);
3. gates of the strategy's current stage (`live` falls back to `backtest`; `inactive` uses `backtest`);
   a metric missing at run time follows `on_missing_metric`: `fail` fails the comparison, `warn` skips it
   and records a warning, `ignore` skips it silently;
4. score (the world's score expression; a missing score follows the same policy: `fail` makes the
   strategy ineligible, `warn`/`ignore` rank it last);
5. correlation and top-K, greedy in score order (ties: strategy id): a candidate is skipped if its
   correlation with an already selected strategy exceeds `max_pairwise` (the next candidate in score
   order is then considered), if its side's quota is full, or once `total` are selected;
6. hysteresis: selected -> pass_streak + 1, fail_streak = 0; else fail_streak + 1, pass_streak = 0;
7. stage transitions, each only after `min_dwell` sessions in the current stage:
   backtest/inactive -> paper after `promote_after` passes; paper -> live after `promote_after` passes;
   paper -> backtest and live -> inactive after `demote_after` failures. A transition resets the streaks.
8. overrides (`quantlab world override`) replace steps 6-7 for their strategy: `force_active` makes it live
   at once, `force_inactive` inactive at once, `freeze` keeps its state; a forced strategy does not take a
   top-K slot from the others (selection runs first); every override in force adds a `warn` rule row
   (family lifecycle) naming the actor and the reason, and its reason code is `override_<action>`.
Every strategy gets a reason code every day. The world-level rows use strategy `*`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from quantlab.calendar import sessions_between
from quantlab.expressions import Gate
from quantlab.world.spec import WorldSpec, days

ACTIVE = ("paper", "live")


def metric_inputs(world: WorldSpec) -> frozenset[str]:
    """The metric names `decide` reads for `world`: every stage's gate names, the score's names, and
    `sample_days` and `paper_days` (sample sufficiency and stage warm-up). A snapshot needs no others."""
    names = {"sample_days", "paper_days", *world.score_expr.names}
    for gate in world.gates.values():
        names |= gate.names
    return frozenset(names)


@dataclass(frozen=True)
class State:
    """A strategy's lifecycle state after a decision."""

    stage: str = "backtest"
    stage_since: dt.date | None = None
    pass_streak: int = 0
    fail_streak: int = 0


@dataclass(frozen=True)
class Override:
    """A manual decision in force on the snapshot's date (`quantlab world override`)."""

    action: str  # force_active | force_inactive | freeze
    actor: str
    reason: str
    override_id: str
    until: dt.date | None = None


@dataclass(frozen=True)
class Snapshot:
    """Everything `decide` reads, immutable."""

    world: WorldSpec
    date: dt.date
    strategies: tuple[str, ...]
    sides: tuple[str, ...]
    metrics: Mapping[str, np.ndarray]  # metric name -> (S,) float, NaN = missing
    data_lag: int
    correlation: np.ndarray | None  # (S, S), NaN = unknown
    previous: tuple[State, ...]
    overrides: Mapping[str, Override] = field(default_factory=dict)  # by strategy id


@dataclass(frozen=True)
class RuleRow:
    strategy: str
    rule: str
    family: str
    status: str
    stage: str
    reason_code: str
    reason: str
    details: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    date: dt.date
    states: tuple[State, ...]
    selected: tuple[bool, ...]
    scores: tuple[float, ...]
    reason_codes: tuple[str, ...]
    evaluate_only: bool
    rules: tuple[RuleRow, ...]


def _eval_gate(
    gate: Gate, env: Mapping[str, np.ndarray], policy: str, n: int
) -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
    """(passed, missing-metric used, failed-leaf texts per strategy) of a gate tree under a missing policy."""
    passed, missing, _, texts = _eval_node(gate, env, policy, n)
    return passed, missing, texts


def _eval_node(
    gate: Gate, env: Mapping[str, np.ndarray], policy: str, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[list[str]]]:
    """(passed, missing, skipped, failed texts) of a gate node.

    A comparison over a missing metric fails under `fail`; under `warn`/`ignore` it is *skipped*: it
    decides nothing, so an `and` ignores it, an `or` is decided by its other branches (an `or` whose
    branches are all skipped is skipped), and a skipped `not` stays skipped. Skipped counts as passed.
    """
    if gate.op == "expr":
        assert gate.expr is not None
        missing = np.zeros(n, dtype=bool)
        for name in gate.expr.names:
            missing |= np.isnan(np.broadcast_to(env[name], (n,)))
        with np.errstate(all="ignore"):
            value = np.broadcast_to(np.asarray(gate.expr.evaluate(env), dtype=bool), (n,))
        skipped = missing & (policy != "fail")
        passed = np.where(missing, skipped, value)
        return passed, missing, skipped, [[gate.expr.text] if not p else [] for p in passed]
    parts = [_eval_node(c, env, policy, n) for c in gate.children]
    missing = np.logical_or.reduce([p[1] for p in parts])
    skipped = np.logical_and.reduce([p[2] for p in parts])
    if gate.op == "not":
        failed_missing = parts[0][1] & (policy == "fail")
        passed = np.where(failed_missing, False, np.where(skipped, True, ~parts[0][0]))
        return (
            passed,
            missing,
            skipped,
            [[f"not ({gate.children[0].canonical()})"] if not p else [] for p in passed],
        )
    decided = np.vstack([p[0] & ~p[2] for p in parts])
    counted = np.vstack([~p[2] for p in parts])
    and_passed = (decided | ~counted).all(axis=0)
    passed = and_passed if gate.op == "and" else decided.any(axis=0) | skipped
    texts = [sum((p[3][i] for p in parts), []) if not passed[i] else [] for i in range(n)]
    return passed, missing, skipped, texts


def _fmt(values: Mapping[str, np.ndarray], names: frozenset[str], i: int, n: int) -> dict[str, float | None]:
    """The metric values strategy i saw (None = missing), for the rule details."""
    out = {}
    for name in sorted(names):
        v = float(np.broadcast_to(values[name], (n,))[i])
        out[name] = None if np.isnan(v) else round(v, 6)
    return out


def _apply_override(ov: Override, prev: State, day: dt.date, selected: bool) -> tuple[State, bool]:
    """(new state, selected) under an override: force_active makes the strategy live now (selected),
    force_inactive makes it inactive now (not selected), freeze keeps its state (streaks included)."""
    if ov.action == "force_active":
        return (prev if prev.stage == "live" else State(stage="live", stage_since=day)), True
    if ov.action == "force_inactive":
        return (prev if prev.stage == "inactive" else State(stage="inactive", stage_since=day)), False
    return prev, selected


def decide(snap: Snapshot) -> Plan:  # noqa: C901 - the decision order reads best in one place
    """The world's plan for `snap.date` (see module docstring for the order and semantics)."""
    w, n = snap.world, len(snap.strategies)
    env = {k: np.asarray(v, dtype=np.float64) for k, v in snap.metrics.items()}
    rows: list[RuleRow] = []
    prev_stage = [s.stage for s in snap.previous]

    max_lag = days(w.data_currency.max_lag)
    stale = snap.data_lag > max_lag
    rows.append(
        RuleRow(
            "*",
            "data_currency",
            "data_currency",
            "fail" if stale else "pass",
            "*",
            "stale_data" if stale else "data_current",
            f"newest bar is {snap.data_lag} sessions old (max {max_lag})"
            + ("; evaluate-only: no promotions, allocation frozen" if stale else ""),
            {"data_lag": snap.data_lag, "max_lag": max_lag},
        )
    )

    # 2. sample sufficiency and stage warm-up
    min_hist = days(w.data_currency.min_history)
    sample = np.broadcast_to(env["sample_days"], (n,))
    paper_days = np.broadcast_to(env["paper_days"], (n,))
    enough = np.nan_to_num(sample, nan=0.0) >= min_hist
    pending = np.array(
        [
            prev_stage[i] in ACTIVE and np.nan_to_num(paper_days[i]) < w.min_days(prev_stage[i])
            for i in range(n)
        ]
    )
    for i, sid in enumerate(snap.strategies):
        if not enough[i]:
            rows.append(
                RuleRow(
                    sid,
                    "sample",
                    "sample",
                    "fail",
                    prev_stage[i],
                    "insufficient_history",
                    f"{int(np.nan_to_num(sample[i]))} sessions of returns < {min_hist}",
                    {"sample_days": int(np.nan_to_num(sample[i])), "min_history": min_hist},
                )
            )
        elif pending[i]:
            need = w.min_days(prev_stage[i])
            rows.append(
                RuleRow(
                    sid,
                    "sample",
                    "sample",
                    "pass",
                    prev_stage[i],
                    "stage_pending",
                    f"{int(np.nan_to_num(paper_days[i]))} of {need} sessions in {prev_stage[i]} before its gates apply",
                    {"stage_days": int(np.nan_to_num(paper_days[i])), "min_days": need},
                )
            )
        else:
            rows.append(
                RuleRow(
                    sid,
                    "sample",
                    "sample",
                    "pass",
                    prev_stage[i],
                    "sample_ok",
                    f"{int(sample[i])} sessions of returns >= {min_hist}",
                    {"sample_days": int(sample[i])},
                )
            )

    # 3. gates of the current stage
    gate_ok = np.zeros(n, dtype=bool)
    missing_any = np.zeros(n, dtype=bool)
    for stage in sorted(set(prev_stage)):
        idx = np.array([s == stage for s in prev_stage])
        gate = w.gates[stage]
        passed, missing, texts = _eval_gate(gate, env, w.on_missing_metric, n)
        gate_ok[idx] = passed[idx]
        missing_any[idx] = missing[idx]
        for i in np.flatnonzero(idx):
            sid = snap.strategies[i]
            values = _fmt(env, gate.names, i, n)
            if not enough[i] or pending[i]:
                rows.append(
                    RuleRow(
                        sid,
                        f"gates_{stage}",
                        "gates",
                        "skip",
                        stage,
                        "not_evaluated",
                        "gates not evaluated (sample or stage warm-up)",
                        {"metrics": values},
                    )
                )
                continue
            if missing[i] and w.on_missing_metric != "ignore":
                status = "fail" if w.on_missing_metric == "fail" else "warn"
                code = "missing_metric"
            else:
                status, code = ("pass", "gates_passed") if passed[i] else ("fail", "gate_failed")
            reason = "all gates pass" if passed[i] else "failed: " + "; ".join(texts[i])
            if missing[i]:
                reason += f" (missing metric, on_missing_metric={w.on_missing_metric})"
            rows.append(
                RuleRow(sid, f"gates_{stage}", "gates", status, stage, code, reason, {"metrics": values})
            )

    # 4. score
    with np.errstate(all="ignore"):
        score = np.broadcast_to(np.asarray(w.score_expr.evaluate(env), dtype=np.float64), (n,)).copy()
    score_missing = ~np.isfinite(score)
    eligible = enough & ~pending & gate_ok
    if w.on_missing_metric == "fail":
        eligible &= ~score_missing
    rank_score = np.where(score_missing, -np.inf, score)

    # 5. correlation and top-K, greedy in score order
    sel = w.selection
    order = sorted(np.flatnonzero(eligible), key=lambda i: (-rank_score[i], snap.strategies[i]))
    selected = np.zeros(n, dtype=bool)
    code = ["not_eligible"] * n
    side_count: dict[str, int] = {}
    for i in order:
        sid, side = snap.strategies[i], snap.sides[i]
        if sel.correlation is not None and snap.correlation is not None:
            chosen = np.flatnonzero(selected)
            corr = snap.correlation[i, chosen] if len(chosen) else np.array([])
            worst = int(np.nanargmax(corr)) if len(corr) and not np.all(np.isnan(corr)) else None
            if worst is not None and corr[worst] > sel.correlation.max_pairwise:
                other = snap.strategies[chosen[worst]]
                code[i] = "correlated"
                rows.append(
                    RuleRow(
                        sid,
                        "correlation",
                        "correlation",
                        "fail",
                        prev_stage[i],
                        "correlated",
                        f"correlation {corr[worst]:.3f} with {other} > {sel.correlation.max_pairwise}",
                        {"with": other, "correlation": round(float(corr[worst]), 6)},
                    )
                )
                continue
            rows.append(
                RuleRow(
                    sid,
                    "correlation",
                    "correlation",
                    "pass",
                    prev_stage[i],
                    "uncorrelated",
                    f"max correlation with selected strategies <= {sel.correlation.max_pairwise}",
                    {},
                )
            )
        quota = sel.topk.by_side.get(side)
        if quota is not None and side_count.get(side, 0) >= quota:
            code[i] = "side_quota_full"
            continue
        if selected.sum() >= sel.topk.total:
            code[i] = "not_in_topk"
            continue
        selected[i] = True
        side_count[side] = side_count.get(side, 0) + 1
        code[i] = "selected"
    for i, sid in enumerate(snap.strategies):
        if code[i] == "not_eligible":
            if not enough[i]:
                code[i] = "insufficient_history"
            elif pending[i]:
                code[i] = "stage_pending"
            elif not gate_ok[i]:
                code[i] = "missing_metric" if missing_any[i] else "gate_failed"
            else:
                code[i] = "missing_metric"  # gates passed; the score is missing under on_missing_metric=fail
        s = None if score_missing[i] else round(float(score[i]), 6)
        status = (
            "pass"
            if selected[i]
            else ("skip" if code[i] in ("insufficient_history", "stage_pending") else "fail")
        )
        rows.append(
            RuleRow(
                sid,
                "selection",
                "selection",
                status,
                prev_stage[i],
                code[i],
                f"score {s}: {code[i].replace('_', ' ')}",
                {"score": s, "side": snap.sides[i]},
            )
        )

    # 6-7. hysteresis and stage transitions (an override decides instead, even in evaluate-only mode)
    hyst = sel.hysteresis
    min_dwell = days(hyst.min_dwell)
    states, reasons = [], []
    for i, (sid, prev) in enumerate(zip(snap.strategies, snap.previous, strict=True)):
        new, reason = prev, code[i]
        ov = snap.overrides.get(sid)
        if ov is not None:
            new, selected[i] = _apply_override(ov, prev, snap.date, selected[i])
            reason = f"override_{ov.action}"
            until = "" if ov.until is None else f" until {ov.until}"
            rows.append(
                RuleRow(
                    sid,
                    "override",
                    "lifecycle",
                    "warn",
                    prev.stage,
                    reason,
                    f"{ov.action} by {ov.actor}{until}: {ov.reason}",
                    {"override_id": ov.override_id, "actor": ov.actor, "action": ov.action},
                )
            )
        elif not stale and not pending[i]:
            new = (
                replace(prev, pass_streak=prev.pass_streak + 1, fail_streak=0)
                if selected[i]
                else replace(prev, pass_streak=0, fail_streak=prev.fail_streak + 1)
            )
            dwell = 10**9 if prev.stage_since is None else sessions_between(prev.stage_since, snap.date)
            target = None
            if dwell >= min_dwell:
                if new.pass_streak >= hyst.promote_after and prev.stage in ("backtest", "inactive", "paper"):
                    target = "live" if prev.stage == "paper" else "paper"
                elif new.fail_streak >= hyst.demote_after and prev.stage in ACTIVE:
                    target = "inactive" if prev.stage == "live" else "backtest"
            if target is not None:
                new = State(stage=target, stage_since=snap.date)
                reason = (
                    f"{'promoted' if target in ACTIVE and prev.stage != 'live' else 'demoted'}_to_{target}"
                )
        elif stale:
            reason = "evaluate_only"
        status = "fail" if (prev.stage == "live" and new.stage != "live") else "pass"
        rows.append(
            RuleRow(
                sid,
                "lifecycle",
                "lifecycle",
                status,
                prev.stage,
                reason,
                f"{prev.stage} -> {new.stage} (pass streak {new.pass_streak}, fail streak {new.fail_streak})",
                {"from": prev.stage, "to": new.stage},
            )
        )
        states.append(new)
        reasons.append(reason)
    n_live = sum(s.stage == "live" for s in states)
    rows.append(
        RuleRow(
            "*",
            "world_selection",
            "selection",
            "pass" if n_live else "warn",
            "*",
            "has_live" if n_live else "no_live_strategy",
            f"{n_live} live strategies" if n_live else "no live strategy: the world holds cash",
            {},
        )
    )
    return Plan(
        snap.date,
        tuple(states),
        tuple(bool(x) for x in selected),
        tuple(float(x) for x in score),
        tuple(reasons),
        stale,
        tuple(rows),
    )
