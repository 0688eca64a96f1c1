"""Tests for quantlab.supervisor: `supervise` under each rule and action, the audit log, `for_strategy` merging."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import polars as pl
import pytest

from quantlab.schemas import TABLES
from quantlab.supervisor import rules
from quantlab.supervisor.rules import supervise
from quantlab.supervisor.spec import RiskLimits, Rule, ScoreFloor, SupervisorSpec

D1, D2 = dt.date(2022, 6, 1), dt.date(2022, 6, 2)

# D1 breaks every limit used below, D2 breaks none of them (except drawdown, see KPIS)
TARGETS = pl.DataFrame(
    {
        "date": [D1, D1, D1, D1, D2, D2],
        "strategy": "s",
        "symbol": ["A", "B", "C", "D", "A", "B"],
        "weight": [0.6, 0.3, -0.2, 0.0, 0.3, 0.2],
    }
)
# D1: max |w| 0.6, 3 positions, gross 1.1, net 0.7;  D2: max |w| 0.3, 2 positions, gross 0.5, net 0.5
KPIS = pl.DataFrame({"date": [D1, D2], "strategy": "s", "max_dd": [0.1, 0.8]})
LIMITS = {"max_symbol_weight": 0.5, "max_positions": 2, "max_gross": 1.0, "max_net": 0.6, "max_drawdown": 0.5}
MEASURED = {
    "max_symbol_weight": "0.6",
    "max_positions": "3",
    "max_gross": "1.1",
    "max_net": "0.7",
    "max_drawdown": "0.8",
}
BREACH_DATE = {name: D1 for name in LIMITS} | {"max_drawdown": D2}


def approve(targets: pl.DataFrame, kpis: pl.DataFrame, limits: RiskLimits) -> pl.DataFrame:
    return supervise(targets, kpis, limits).approvals


def run(name: str, action: str, limit: float | None = None, targets: pl.DataFrame = TARGETS) -> pl.DataFrame:
    rule = Rule(limit=LIMITS[name] if limit is None else limit, action=action)
    out = approve(targets, KPIS, RiskLimits(**{name: rule}))
    TABLES["approvals"].schema.validate(out)
    return out


def rows(df: pl.DataFrame, date: dt.date) -> dict[str, dict[str, Any]]:
    return {r["symbol"]: r for r in df.filter(pl.col("date") == date).iter_rows(named=True)}


def test_zero_weights_are_dropped_and_no_rules_approve_all() -> None:
    out = approve(TARGETS, KPIS, RiskLimits())
    assert out.height == 5 and "D" not in out.get_column("symbol").to_list()
    assert out.get_column("approved").all()
    assert (out.get_column("approved_weight") == out.get_column("target_weight")).all()
    assert set(out.get_column("reason")) == {"approved: within all risk limits"}
    assert set(out.get_column("risk_flags")) == {""}


@pytest.mark.parametrize("weights", [[], [0.0, 0.0]], ids=["no_rows", "zero_weights_only"])
def test_nothing_to_approve_gives_empty_typed_frames(weights: list[float]) -> None:
    targets = pl.DataFrame(
        {
            "date": [D1] * len(weights),
            "strategy": "s",
            "symbol": ["A", "B"][: len(weights)],
            "weight": weights,
        },
        schema={"date": pl.Date, "strategy": pl.String, "symbol": pl.String, "weight": pl.Float64},
    )
    limits = RiskLimits(
        max_turnover=Rule(limit=0.1, action="scale"), max_gross=Rule(limit=1.0, action="reject")
    )
    out = supervise(targets, KPIS, limits)
    assert out.approvals.height == 0 and out.audit.height == 0
    TABLES["approvals"].schema.validate(out.approvals)
    TABLES["audit_log"].schema.validate(out.audit)


@pytest.mark.parametrize("name", list(LIMITS))
def test_flag_records_but_keeps_weights(name: str) -> None:
    out = run(name, "flag")
    hit, clean = BREACH_DATE[name], ({D1, D2} - {BREACH_DATE[name]}).pop()
    assert (out.get_column("approved_weight") == out.get_column("target_weight")).all()
    assert out.get_column("approved").all()
    for r in rows(out, hit).values():
        assert r["risk_flags"].startswith(f"{name}[flag]: {MEASURED[name]}")
        assert r["reason"] == f"approved with adjustments: {r['risk_flags']}"
    for r in rows(out, clean).values():
        assert r["risk_flags"] == ""
        assert r["reason"] == "approved: within all risk limits"


@pytest.mark.parametrize("name", list(LIMITS))
def test_reject_zeroes_only_the_breaching_date(name: str) -> None:
    out = run(name, "reject")
    hit, clean = BREACH_DATE[name], ({D1, D2} - {BREACH_DATE[name]}).pop()
    for r in rows(out, hit).values():
        assert r["approved"] is False
        assert r["approved_weight"] == 0.0
        assert r["target_weight"] != 0.0
        assert f"{name}[reject]" in r["risk_flags"]
        assert r["reason"].startswith("rejected: ") and name in r["reason"]
    for r in rows(out, clean).values():
        assert r["approved"] is True
        assert r["approved_weight"] == r["target_weight"]


def test_scale_max_symbol_weight_clips_each_name() -> None:
    got = {s: r["approved_weight"] for s, r in rows(run("max_symbol_weight", "scale"), D1).items()}
    assert got == pytest.approx({"A": 0.5, "B": 0.3, "C": -0.2})
    short = TARGETS.with_columns(weight=-pl.col("weight"))
    out = run("max_symbol_weight", "scale", targets=short)
    got = {s: r["approved_weight"] for s, r in rows(out, D1).items()}
    assert got == pytest.approx({"A": -0.5, "B": -0.3, "C": 0.2})


def test_scale_max_positions_keeps_largest_abs_weights() -> None:
    out = run("max_positions", "scale")
    got = {s: r["approved_weight"] for s, r in rows(out, D1).items()}
    assert got == pytest.approx({"A": 0.6, "B": 0.3, "C": 0.0})
    assert out.get_column("approved").all()
    assert all("max_positions[scale]: 3" in r["risk_flags"] for r in rows(out, D1).values())
    out = run("max_positions", "scale", limit=1)
    assert {s: r["approved_weight"] for s, r in rows(out, D2).items()} == pytest.approx({"A": 0.3, "B": 0.0})


def test_scale_max_positions_with_ties_keeps_exactly_limit() -> None:
    tied = pl.DataFrame(
        {"date": D1, "strategy": "s", "symbol": ["C", "A", "B", "D"], "weight": [0.2, 0.2, -0.2, 0.1]}
    )
    for _ in range(3):
        out = approve(tied, KPIS, RiskLimits(max_positions=Rule(limit=2, action="scale")))
        kept = out.filter(pl.col("approved_weight") != 0)
        assert kept.height == 2
        assert "D" not in kept.get_column("symbol").to_list()  # the smallest |weight| goes first


def test_scale_max_gross_shrinks_proportionally() -> None:
    out = run("max_gross", "scale")
    got = {s: r["approved_weight"] for s, r in rows(out, D1).items()}
    assert got == pytest.approx({"A": 0.6 / 1.1, "B": 0.3 / 1.1, "C": -0.2 / 1.1})
    assert sum(abs(v) for v in got.values()) == pytest.approx(1.0)
    assert {s: r["approved_weight"] for s, r in rows(out, D2).items()} == pytest.approx({"A": 0.3, "B": 0.2})


def test_scale_max_net_shrinks_book_to_limit() -> None:
    out = run("max_net", "scale")
    got = {s: r["approved_weight"] for s, r in rows(out, D1).items()}
    assert abs(sum(got.values())) == pytest.approx(0.6)
    assert got["A"] / got["B"] == pytest.approx(2.0)  # proportional
    assert got["C"] == pytest.approx(-0.2 * 0.6 / 0.7)


def test_scale_max_drawdown_acts_as_flag() -> None:
    out = run("max_drawdown", "scale")
    assert (out.get_column("approved_weight") == out.get_column("target_weight")).all()
    assert out.get_column("approved").all()
    assert all("max_drawdown[scale]: 0.8 > 0.5" in r["risk_flags"] for r in rows(out, D2).values())


def test_limit_exactly_met_is_not_a_breach() -> None:
    out = run("max_gross", "reject", limit=1.1)  # D1 gross is 0.6 + 0.3 + 0.2 = 1.1
    assert out.get_column("approved").all()
    out = run("max_positions", "reject", limit=3)
    assert out.get_column("approved").all()


def test_missing_drawdown_kpi_counts_as_zero() -> None:
    limits = RiskLimits(max_drawdown=Rule(limit=0.0, action="reject"))
    out = approve(TARGETS, KPIS.filter(pl.col("date") == D1), limits)
    assert rows(out, D1)["A"]["approved"] is False  # 0.1 > 0
    assert rows(out, D2)["A"]["approved"] is True  # no KPI row: treated as 0


def test_rules_chain_in_documented_order_and_flags_accumulate() -> None:
    limits = RiskLimits(
        max_symbol_weight=Rule(limit=0.5, action="scale"),
        max_gross=Rule(limit=0.9, action="scale"),
        max_net=Rule(limit=0.1, action="flag"),
    )
    out = approve(TARGETS, KPIS, limits)
    d1 = rows(out, D1)
    # symbol cap first: 0.5, 0.3, -0.2 (gross 1.0) then gross scale to 0.9
    got = {s: r["approved_weight"] for s, r in d1.items()}
    assert got == pytest.approx({"A": 0.45, "B": 0.27, "C": -0.18})
    flags = d1["A"]["risk_flags"]
    parts = flags.split("; ")
    assert [p.split("[")[0] for p in parts] == ["max_symbol_weight", "max_gross", "max_net"]
    assert parts[1] == "max_gross[scale]: 1.0 > 0.9"  # measured after the symbol cap
    assert all(r["risk_flags"] == flags for r in d1.values())  # strategy-level flags on every row
    assert d1["A"]["approved"] is True
    # D2: only the net flag (0.5 > 0.1)
    assert rows(out, D2)["A"]["risk_flags"] == "max_net[flag]: 0.5 > 0.1"


def test_reject_after_scale_still_rejects() -> None:
    limits = RiskLimits(
        max_symbol_weight=Rule(limit=0.5, action="scale"),
        max_gross=Rule(limit=0.4, action="reject"),
    )
    out = approve(TARGETS, KPIS, limits)
    assert not any(r["approved"] for r in rows(out, D1).values())
    assert all(r["approved_weight"] == 0.0 for r in rows(out, D1).values())
    assert not any(r["approved"] for r in rows(out, D2).values())  # gross 0.5 > 0.4


def test_for_strategy_overrides_only_given_rules() -> None:
    sup = SupervisorSpec()
    own = RiskLimits(max_gross=Rule(limit=0.8, action="reject"), max_net=Rule(limit=0.1, action="scale"))
    merged = sup.for_strategy(own)
    assert merged.max_gross == Rule(limit=0.8, action="reject")
    assert merged.max_net == Rule(limit=0.1, action="scale")
    assert merged.max_symbol_weight == sup.rules.max_symbol_weight
    assert merged.max_positions == sup.rules.max_positions
    assert merged.max_drawdown == sup.rules.max_drawdown
    assert sup.for_strategy(RiskLimits()) == sup.rules
    # a supervisor without a global rule takes the strategy's
    sparse = SupervisorSpec(rules=RiskLimits(max_gross=Rule(limit=2.0, action="flag")))
    merged = sparse.for_strategy(RiskLimits(max_positions=Rule(limit=1, action="scale")))
    assert merged.max_gross == Rule(limit=2.0, action="flag")
    assert merged.max_positions == Rule(limit=1, action="scale")
    assert merged.max_net is None


def test_merged_rules_drive_approve() -> None:
    sup = SupervisorSpec(rules=RiskLimits(max_gross=Rule(limit=5.0, action="reject")))
    relaxed = approve(TARGETS, KPIS, sup.for_strategy(RiskLimits()))
    assert relaxed.get_column("approved").all()
    strict = approve(TARGETS, KPIS, sup.for_strategy(RiskLimits(max_gross=Rule(limit=1.0, action="reject"))))
    assert [r["approved"] for r in strict.iter_rows(named=True)] == [False, False, False, True, True]


# ----------------------------------------------------------------- score floor, side caps, turnover, audit
SCORED = TARGETS.with_columns(score=pl.Series([0.9, 0.05, -0.8, 0.0, 0.5, None]))
# D1: convictions A 0.9, B 0.05, C (short) 0.8; D2: A 0.5, B missing


def test_min_score_scale_drops_low_conviction_names_and_missing_scores() -> None:
    out = supervise(SCORED, KPIS, RiskLimits(min_score=ScoreFloor(limit=0.1, action="scale")))
    d1, d2 = rows(out.approvals, D1), rows(out.approvals, D2)
    assert {s: r["approved_weight"] for s, r in d1.items()} == pytest.approx({"A": 0.6, "B": 0.0, "C": -0.2})
    assert d1["A"]["risk_flags"] == "min_score[scale]: 1 names below 0.1 (lowest 0.05)"
    assert {s: r["approved_weight"] for s, r in d2.items()} == pytest.approx({"A": 0.3, "B": 0.0})
    audit = out.audit.filter(pl.col("rule") == "min_score")
    assert audit.get_column("date").to_list() == [D1, D2]
    assert audit.get_column("measured").to_list()[0] == pytest.approx(0.05)
    # a negative floor is allowed (scores of any sign), reject approves nothing
    rej = supervise(SCORED, KPIS, RiskLimits(min_score=ScoreFloor(limit=-1.0, action="reject"))).approvals
    assert rows(rej, D1)["A"]["approved"] is True
    assert rows(rej, D2)["A"]["approved"] is False  # B has no score: below any floor


def test_side_caps_scale_only_their_side() -> None:
    limits = RiskLimits(
        max_long_gross=Rule(limit=0.45, action="scale"), max_short_gross=Rule(limit=0.1, action="scale")
    )
    out = supervise(TARGETS, KPIS, limits)
    got = {s: r["approved_weight"] for s, r in rows(out.approvals, D1).items()}
    assert got == pytest.approx({"A": 0.3, "B": 0.15, "C": -0.1})
    assert rows(out.approvals, D2)["A"]["risk_flags"] == "max_long_gross[scale]: 0.5 > 0.45"
    assert out.audit.filter(pl.col("date") == D1).get_column("rule").to_list() == [
        "max_long_gross",
        "max_short_gross",
    ]


def _book(weights: list[dict[str, float]], strategy: str = "s") -> pl.DataFrame:
    days = [dt.date(2022, 6, 1) + dt.timedelta(days=k) for k in range(len(weights))]
    return pl.DataFrame(
        [
            {"date": d, "strategy": strategy, "symbol": sym, "weight": w}
            for d, book in zip(days, weights, strict=True)
            for sym, w in book.items()
        ],
        schema={"date": pl.Date, "strategy": pl.String, "symbol": pl.String, "weight": pl.Float64},
    )


BOOKS = [{"A": 0.5, "B": 0.5}, {"A": 0.5, "B": 0.5}, {"C": 1.0, "A": 0.0}, {"C": 1.0}, {"C": 1.0}]


def test_turnover_scale_moves_part_of_the_way_in_date_order() -> None:
    limits = RiskLimits(max_turnover=Rule(limit=0.5, action="scale"))
    out = supervise(
        _book(BOOKS),
        pl.DataFrame(schema={"date": pl.Date, "strategy": pl.String, "max_dd": pl.Float64}),
        limits,
    )
    book = {(r["date"].day, r["symbol"]): r["approved_weight"] for r in out.approvals.iter_rows(named=True)}
    # day 1 enters from cash (turnover 1 > 0.5): half way; day 2 completes the move (0.5 is not over 0.5)
    assert book[(1, "A")] == pytest.approx(0.25) and book[(1, "B")] == pytest.approx(0.25)
    assert book[(2, "A")] == pytest.approx(0.5)
    # day 3 rotates to C: turnover 0.5 + 0.5 + 1 = 2; a quarter of the move; A and B stay, target 0
    assert book[(3, "C")] == pytest.approx(0.25)
    assert book[(3, "A")] == pytest.approx(0.375) and book[(3, "B")] == pytest.approx(0.375)
    day3 = out.approvals.filter(pl.col("date") == dt.date(2022, 6, 3)).sort("symbol")
    assert day3.get_column("target_weight").to_list() == [0.0, 0.0, 1.0]
    assert day3.get_column("risk_flags").to_list() == ["max_turnover[scale]: 2.0 > 0.5"] * 3
    assert out.audit.get_column("measured").to_list() == pytest.approx([1.0, 2.0, 1.5, 1.0])
    assert book[(5, "C")] == pytest.approx(0.75) and book[(5, "A")] == pytest.approx(0.125)
    TABLES["approvals"].schema.validate(out.approvals)
    TABLES["audit_log"].schema.validate(out.audit)


def test_turnover_partial_move_keeps_a_name_an_earlier_rule_cut_in_its_own_row() -> None:
    """A held name that `max_positions` cuts (its target row stays, weight 0) and a turnover `scale` keeps
    in part gets that weight in its row: one approval row per (date, strategy, symbol), never an extra."""
    books = [{"A": 0.5, "B": 0.5}, {"C": 0.6, "B": 0.3, "A": 0.1}]  # day 2: A is the smallest of three
    limits = RiskLimits(
        max_positions=Rule(limit=2, action="scale"), max_turnover=Rule(limit=0.4, action="scale")
    )
    kp = pl.DataFrame(schema={"date": pl.Date, "strategy": pl.String, "max_dd": pl.Float64})
    out = supervise(
        _book(books),
        kp,
        limits,
        previous=_book(books[:1]).select("strategy", "symbol", approved_weight="weight"),
    )
    TABLES["approvals"].schema.validate(out.approvals)  # unique (date, strategy, symbol)
    day2 = {
        r["symbol"]: r
        for r in out.approvals.filter(pl.col("date") == dt.date(2022, 6, 2)).iter_rows(named=True)
    }
    assert sorted(day2) == ["A", "B", "C"]
    # turnover against {A 0.5, B 0.5} after the cut {C 0.6, B 0.3}: 0.5 + 0.2 + 0.6 = 1.3; moved 0.4 / 1.3
    f = 0.4 / 1.3
    assert day2["A"]["target_weight"] == 0.1 and day2["A"]["approved_weight"] == pytest.approx(0.5 * (1 - f))
    assert day2["B"]["approved_weight"] == pytest.approx(0.5 - 0.2 * f)
    assert day2["C"]["approved_weight"] == pytest.approx(0.6 * f)


def test_turnover_ranged_equals_chunked_with_previous_book() -> None:
    """A range gives the same rows as its days run one at a time, each fed the previous day's book."""
    limits = {
        "s": RiskLimits(max_turnover=Rule(limit=0.6, action="scale")),
        "t": RiskLimits(
            max_turnover=Rule(limit=0.3, action="reject"), max_gross=Rule(limit=0.9, action="scale")
        ),
    }
    targets = pl.concat([_book(BOOKS, "s"), _book(BOOKS[::-1], "t")])
    kp = pl.DataFrame(schema={"date": pl.Date, "strategy": pl.String, "max_dd": pl.Float64})
    whole = supervise(targets, kp, limits)
    prev, parts, audits = None, [], []
    for day in targets.get_column("date").unique().sort():
        step = supervise(targets.filter(pl.col("date") == day), kp, limits, previous=prev)
        parts.append(step.approvals)
        audits.append(step.audit)
        prev = step.approvals.select("strategy", "symbol", "approved_weight")
    assert pl.concat(parts).equals(whole.approvals)
    assert pl.concat(audits).equals(whole.audit)
    assert "max_turnover" in whole.audit.get_column("rule").to_list()
    # `t` rejects every day (entering 0.9 from cash is over 0.3 each time: reject keeps it in cash)
    t = whole.approvals.filter(pl.col("strategy") == "t")
    assert not t.get_column("approved").any()


def test_turnover_blocks_do_not_change_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    """The turnover rule gives the same rows whatever the size of its dense date blocks: episodes (held
    book away from the target) carry over block ends, as do absent dates, zero-only dates and rejections."""
    rng = np.random.default_rng(5)
    days = [dt.date(2022, 6, 1) + dt.timedelta(days=k) for k in range(40)]
    rows = []
    for i, sid in enumerate(["a", "b", "c", "d"]):
        for k, day in enumerate(days):
            if i == 1 and k % 7 == 3:
                continue  # absent that day
            names = rng.choice(6, size=3, replace=False)
            for j in names:
                weight = 0.0 if i == 2 and k % 9 == 4 else float(rng.uniform(0.1, 0.5))
                rows.append((day, sid, f"S{j}", weight))
    targets = pl.DataFrame(rows, schema=["date", "strategy", "symbol", "weight"], orient="row")
    kpis = pl.DataFrame(
        {"date": days, "strategy": "d", "max_dd": [0.6 if k % 5 == 0 else 0.1 for k in range(40)]}
    )
    limits = {
        "a": RiskLimits(max_turnover=Rule(limit=0.4, action="scale")),
        "b": RiskLimits(max_turnover=Rule(limit=0.3, action="scale")),
        "c": RiskLimits(max_turnover=Rule(limit=0.5, action="reject")),
        "d": RiskLimits(
            max_turnover=Rule(limit=0.4, action="flag"), max_drawdown=Rule(limit=0.5, action="reject")
        ),
    }
    previous = pl.DataFrame({"strategy": ["a", "b"], "symbol": ["S0", "S1"], "approved_weight": [0.3, -0.2]})
    whole = supervise(targets, kpis, limits, previous)
    assert set(whole.audit.filter(pl.col("rule") == "max_turnover").get_column("action")) == {
        "flag",
        "scale",
        "reject",
    }
    monkeypatch.setattr(rules, "_BLOCK", 1)  # one date per block
    small = supervise(targets, kpis, limits, previous)
    assert small.approvals.equals(whole.approvals) and small.audit.equals(whole.audit)


def test_audit_log_has_one_row_per_trigger_with_its_reason() -> None:
    limits = RiskLimits(
        max_symbol_weight=Rule(limit=0.5, action="scale"),
        max_gross=Rule(limit=0.9, action="scale"),
        max_net=Rule(limit=0.1, action="flag"),
        max_drawdown=Rule(limit=0.5, action="reject"),
    )
    out = supervise(TARGETS, KPIS, limits)
    audit = out.audit
    TABLES["audit_log"].schema.validate(audit)
    assert audit.select("date", "rule").rows() == [
        (D1, "max_symbol_weight"),
        (D1, "max_gross"),
        (D1, "max_net"),
        (D2, "max_drawdown"),
        (D2, "max_net"),
    ]
    first = audit.row(0, named=True)
    assert (first["action"], first["limit"], first["measured"]) == ("scale", 0.5, pytest.approx(0.6))
    assert first["reason"] == "max_symbol_weight[scale]: 0.6 > 0.5"
    flags = rows(out.approvals, D1)["A"]["risk_flags"]
    assert flags == "; ".join(audit.filter(pl.col("date") == D1).get_column("reason"))


def test_per_strategy_limits_apply_to_their_own_strategy() -> None:
    both = pl.concat([TARGETS, TARGETS.with_columns(strategy=pl.lit("u"))])
    kp = pl.concat([KPIS, KPIS.with_columns(strategy=pl.lit("u"))])
    limits = {"s": RiskLimits(), "u": RiskLimits(max_gross=Rule(limit=0.4, action="reject"))}
    out = supervise(both, kp, limits).approvals
    assert out.filter(pl.col("strategy") == "s").get_column("approved").all()
    assert not out.filter(pl.col("strategy") == "u").get_column("approved").any()
