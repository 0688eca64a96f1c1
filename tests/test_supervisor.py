"""Tests for quantlab.supervisor: `approve` under each rule and action, and `for_strategy` merging."""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl
import pytest

from quantlab.schemas import TABLES
from quantlab.supervisor.rules import approve
from quantlab.supervisor.spec import RiskLimits, Rule, SupervisorSpec

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
KPIS = pl.DataFrame({"date": [D1, D2], "max_dd": [0.1, 0.8]})
LIMITS = {"max_symbol_weight": 0.5, "max_positions": 2, "max_gross": 1.0, "max_net": 0.6, "max_drawdown": 0.5}
MEASURED = {
    "max_symbol_weight": "0.6",
    "max_positions": "3",
    "max_gross": "1.1",
    "max_net": "0.7",
    "max_drawdown": "0.8",
}
BREACH_DATE = {name: D1 for name in LIMITS} | {"max_drawdown": D2}


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
