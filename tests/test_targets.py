"""Tests for quantlab.strategy_lab.targets.strategy_targets on small hand-made feature frames."""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any

import polars as pl
import pytest

from quantlab.features.library import FEATURE_NAMES
from quantlab.schemas import TABLES
from quantlab.strategy_lab.spec import StrategySpec, apply_params
from quantlab.strategy_lab.targets import all_targets, strategy_targets

D1, D2 = dt.date(2021, 3, 1), dt.date(2021, 3, 2)


def features(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """A features frame with every library column (Float64, null unless given)."""
    schema = {"date": pl.Date, "symbol": pl.String, **{name: pl.Float64 for name in FEATURE_NAMES}}
    return pl.DataFrame([{name: r.get(name) for name in schema} for r in rows], schema=schema)


def spec(score: str = "mom_20", universe: dict | None = None, **portfolio: Any) -> StrategySpec:
    return StrategySpec.model_validate(
        {"id": "t", "universe": universe or {"all": True}, "signal": {"score": score}, "portfolio": portfolio}
    )


def by_symbol(df: pl.DataFrame, date: dt.date = D1) -> dict[str, dict[str, Any]]:
    return {r["symbol"]: r for r in df.filter(pl.col("date") == date).iter_rows(named=True)}


# five symbols, distinct scores on D1
BASIC = features(
    [
        {"date": D1, "symbol": "A", "mom_20": 0.30, "vol_20": 0.10},
        {"date": D1, "symbol": "B", "mom_20": 0.20, "vol_20": 0.20},
        {"date": D1, "symbol": "C", "mom_20": 0.10, "vol_20": 0.40},
        {"date": D1, "symbol": "D", "mom_20": -0.10, "vol_20": 0.20},
        {"date": D1, "symbol": "E", "mom_20": -0.20, "vol_20": 0.50},
    ]
)


def test_output_matches_targets_schema() -> None:
    out = strategy_targets(BASIC, spec(long={"top": 2}))
    TABLES["targets"].schema.validate(out)
    assert out.columns == ["date", "strategy", "symbol", "score", "weight", "side"]
    assert out.get_column("strategy").unique().to_list() == ["t"]
    assert out.get_column("symbol").to_list() == ["A", "B", "C", "D", "E"]  # sorted by (date, symbol)


@pytest.mark.parametrize(("top", "gross"), [(1, 1.0), (2, 1.0), (3, 1.5), (5, 0.8)])
def test_top_n_long_equal_weights_sum_to_gross(top: int, gross: float) -> None:
    out = strategy_targets(BASIC, spec(long={"top": top}, gross=gross))
    rows = by_symbol(out)
    longs = [s for s in "ABCDE" if rows[s]["side"] == "long"]
    assert longs == list("ABCDE")[:top]  # the highest scores
    for s in "ABCDE":
        expected = gross / top if s in longs else 0.0
        assert rows[s]["weight"] == pytest.approx(expected)
    assert out.get_column("weight").sum() == pytest.approx(gross)


def test_ties_broken_by_symbol() -> None:
    frame = features(
        [{"date": D1, "symbol": s, "mom_20": 0.5, "vol_20": 0.2} for s in ["D", "B", "E", "A", "C"]]
    )
    out = strategy_targets(frame, spec(long={"top": 2}, short={"top": 2}))
    rows = by_symbol(out)
    assert [s for s in "ABCDE" if rows[s]["side"] == "long"] == ["A", "B"]
    assert [s for s in "ABCDE" if rows[s]["side"] == "short"] == ["D", "E"]
    assert rows["C"]["side"] == "flat"
    # the same input in another row order gives the same output
    again = strategy_targets(frame.reverse(), spec(long={"top": 2}, short={"top": 2}))
    assert again.equals(out)


def test_partial_tie_at_cutoff() -> None:
    frame = features(
        [
            {"date": D1, "symbol": "Z", "mom_20": 0.9},
            {"date": D1, "symbol": "M", "mom_20": 0.5},
            {"date": D1, "symbol": "K", "mom_20": 0.5},
            {"date": D1, "symbol": "A", "mom_20": 0.1},
        ]
    )
    rows = by_symbol(strategy_targets(frame, spec(long={"top": 2})))
    assert {s for s, r in rows.items() if r["side"] == "long"} == {"Z", "K"}


def test_long_short_each_leg_gets_half_gross() -> None:
    out = strategy_targets(BASIC, spec(long={"top": 2}, short={"top": 2}, gross=1.0))
    rows = by_symbol(out)
    assert {s: r["side"] for s, r in rows.items()} == {
        "A": "long",
        "B": "long",
        "C": "flat",
        "D": "short",
        "E": "short",
    }
    assert rows["A"]["weight"] == pytest.approx(0.25)
    assert rows["B"]["weight"] == pytest.approx(0.25)
    assert rows["D"]["weight"] == pytest.approx(-0.25)
    assert rows["E"]["weight"] == pytest.approx(-0.25)
    assert rows["C"]["weight"] == 0.0
    long_sum = out.filter(pl.col("side") == "long").get_column("weight").sum()
    short_sum = out.filter(pl.col("side") == "short").get_column("weight").sum()
    assert long_sum == pytest.approx(0.5) and short_sum == pytest.approx(-0.5)


def test_short_only_strategy() -> None:
    rows = by_symbol(strategy_targets(BASIC, spec(long={"top": 0}, short={"top": 1}, gross=0.6)))
    assert rows["E"]["side"] == "short" and rows["E"]["weight"] == pytest.approx(-0.6)
    assert all(rows[s]["side"] == "flat" and rows[s]["weight"] == 0.0 for s in "ABCD")


def test_short_leg_never_reuses_long_names() -> None:
    frame = BASIC.filter(pl.col("symbol").is_in(["A", "B", "C"]))
    rows = by_symbol(strategy_targets(frame, spec(long={"top": 2}, short={"top": 2})))
    assert rows["A"]["side"] == rows["B"]["side"] == "long"
    assert rows["C"]["side"] == "short" and rows["C"]["weight"] == pytest.approx(-0.5)


def test_max_weight_cap_is_hard_excess_stays_in_cash() -> None:
    out = strategy_targets(BASIC, spec(long={"top": 2}, max_weight=0.3, gross=1.0))
    rows = by_symbol(out)
    assert rows["A"]["weight"] == pytest.approx(0.3)
    assert rows["B"]["weight"] == pytest.approx(0.3)
    assert out.get_column("weight").sum() == pytest.approx(0.6)  # 0.4 stays in cash
    assert out.get_column("weight").abs().max() <= 0.3 + 1e-12


def test_max_weight_cap_applies_to_short_leg() -> None:
    out = strategy_targets(BASIC, spec(long={"top": 1}, short={"top": 1}, max_weight=0.2, gross=1.0))
    rows = by_symbol(out)
    assert rows["A"]["weight"] == pytest.approx(0.2)
    assert rows["E"]["weight"] == pytest.approx(-0.2)


def test_inverse_vol_weights_proportional_to_one_over_vol() -> None:
    out = strategy_targets(BASIC, spec(long={"top": 3}, weighting="inverse_vol", gross=1.0))
    rows = by_symbol(out)
    inv = {"A": 1 / 0.10, "B": 1 / 0.20, "C": 1 / 0.40}
    total = sum(inv.values())
    for s, v in inv.items():
        assert rows[s]["weight"] == pytest.approx(v / total)
    assert rows["A"]["weight"] / rows["B"]["weight"] == pytest.approx(2.0)
    assert rows["B"]["weight"] / rows["C"]["weight"] == pytest.approx(2.0)
    assert out.get_column("weight").sum() == pytest.approx(1.0)


def test_inverse_vol_with_cap() -> None:
    out = strategy_targets(BASIC, spec(long={"top": 3}, weighting="inverse_vol", max_weight=0.5))
    rows = by_symbol(out)
    assert rows["A"]["weight"] == pytest.approx(0.5)  # 4/7 capped
    assert rows["B"]["weight"] == pytest.approx(2 / 7)
    assert rows["C"]["weight"] == pytest.approx(1 / 7)


def test_score_weighting_uses_absolute_score() -> None:
    out = strategy_targets(BASIC, spec(long={"top": 2}, short={"top": 2}, weighting="score", gross=2.0))
    rows = by_symbol(out)
    assert rows["A"]["weight"] == pytest.approx(1.0 * 0.3 / 0.5)
    assert rows["B"]["weight"] == pytest.approx(1.0 * 0.2 / 0.5)
    assert rows["D"]["weight"] == pytest.approx(-1.0 * 0.1 / 0.3)
    assert rows["E"]["weight"] == pytest.approx(-1.0 * 0.2 / 0.3)


def test_null_and_non_finite_scores_are_excluded() -> None:
    frame = features(
        [
            {"date": D1, "symbol": "A", "mom_20": None, "vol_20": 0.1},
            {"date": D1, "symbol": "B", "mom_20": 0.2, "vol_20": 0.0},  # score mom_20 / vol_20 = inf
            {"date": D1, "symbol": "C", "mom_20": 0.1, "vol_20": 0.5},
            {"date": D1, "symbol": "D", "mom_20": 0.05, "vol_20": 0.5},
            {"date": D1, "symbol": "E", "mom_20": float("nan"), "vol_20": 0.5},
        ]
    )
    out = strategy_targets(frame, spec("mom_20 / vol_20", long={"top": 1}))
    assert out.get_column("symbol").to_list() == ["C", "D"]
    rows = by_symbol(out)
    assert rows["C"]["side"] == "long" and rows["C"]["weight"] == pytest.approx(1.0)
    assert all(math.isfinite(x) for x in out.get_column("score").to_list())


def test_score_expression_is_evaluated_per_row() -> None:
    frame = features(
        [
            {"date": D1, "symbol": "A", "mom_20": 0.3, "vol_20": 0.5},
            {"date": D1, "symbol": "B", "mom_20": 0.2, "vol_20": 0.1},
        ]
    )
    out = strategy_targets(frame, spec("mom_20 - 0.5 * vol_20", long={"top": 1}))
    rows = by_symbol(out)
    assert rows["A"]["score"] == pytest.approx(0.05)
    assert rows["B"]["score"] == pytest.approx(0.15)
    assert rows["B"]["side"] == "long"


def test_universe_filter() -> None:
    out = strategy_targets(BASIC, spec(universe={"symbols": ["C", "E", "ZZZ"]}, long={"top": 1}))
    assert out.get_column("symbol").to_list() == ["C", "E"]
    rows = by_symbol(out)
    assert rows["C"]["side"] == "long" and rows["C"]["weight"] == pytest.approx(1.0)
    assert rows["E"]["side"] == "flat"


def test_side_values_and_sign_consistency() -> None:
    out = strategy_targets(BASIC, spec(long={"top": 2}, short={"top": 1}))
    assert set(out.get_column("side").unique()) <= {"long", "short", "flat"}
    assert out.filter((pl.col("side") == "long") & (pl.col("weight") <= 0)).is_empty()
    assert out.filter((pl.col("side") == "short") & (pl.col("weight") >= 0)).is_empty()
    assert out.filter((pl.col("side") == "flat") & (pl.col("weight") != 0)).is_empty()


def test_one_row_per_scored_symbol_and_dates_independent() -> None:
    rows = [
        {"date": D1, "symbol": "A", "mom_20": 0.1},
        {"date": D1, "symbol": "B", "mom_20": 0.2},
        {"date": D1, "symbol": "C", "mom_20": None},
        {"date": D2, "symbol": "A", "mom_20": 0.3},
        {"date": D2, "symbol": "B", "mom_20": -0.1},
        {"date": D2, "symbol": "C", "mom_20": 0.0},
    ]
    out = strategy_targets(features(rows), spec(long={"top": 1}))
    assert out.height == 5
    assert out.select("date", "symbol").is_duplicated().sum() == 0
    assert out.filter(pl.col("date") == D1).get_column("symbol").to_list() == ["A", "B"]
    assert {s: r["side"] for s, r in by_symbol(out, D1).items()} == {"A": "flat", "B": "long"}
    assert {s: r["side"] for s, r in by_symbol(out, D2).items()} == {"A": "long", "B": "flat", "C": "flat"}
    # each date's long leg sums to gross on its own
    sums = out.group_by("date").agg(pl.col("weight").sum()).sort("date").get_column("weight").to_list()
    assert sums == pytest.approx([1.0, 1.0])


def test_fewer_candidates_than_top() -> None:
    frame = BASIC.filter(pl.col("symbol").is_in(["A", "B"]))
    rows = by_symbol(strategy_targets(frame, spec(long={"top": 4})))
    assert rows["A"]["weight"] == pytest.approx(0.5) and rows["B"]["weight"] == pytest.approx(0.5)


def test_all_targets_concatenates_strategies() -> None:
    s1 = spec(long={"top": 1})
    doc = {"id": "u", "universe": {"all": True}, "signal": {"score": "-mom_20"}}
    s2 = StrategySpec.model_validate({**doc, "portfolio": {"long": {"top": 1}}})
    out = all_targets(BASIC, {"t": s1, "u": s2})
    assert out.height == 10
    top = out.filter(pl.col("side") == "long").select("strategy", "symbol").sort("strategy").rows()
    assert top == [("t", "A"), ("u", "E")]


def test_quantile_legs_scale_with_the_scored_names() -> None:
    out = by_symbol(strategy_targets(BASIC, spec(long={"quantile": 0.4}, short={"quantile": 0.2})))
    assert [s for s in "ABCDE" if out[s]["side"] == "long"] == ["A", "B"]  # floor(5 x 0.4) = 2
    assert [s for s in "ABCDE" if out[s]["side"] == "short"] == ["E"]  # floor(5 x 0.2) = 1
    few = strategy_targets(BASIC.filter(pl.col("symbol").is_in(["A", "B"])), spec(long={"quantile": 0.1}))
    assert by_symbol(few)["A"]["weight"] == 1.0  # floor(2 x 0.1) = 0: at least one name


def test_net_exposure_splits_the_gross_between_legs() -> None:
    out = strategy_targets(BASIC, spec(long={"top": 2}, short={"top": 2}, gross=1.0, net=0.5))
    rows = by_symbol(out)
    assert math.isclose(sum(rows[s]["weight"] for s in "AB"), 0.75)
    assert math.isclose(sum(rows[s]["weight"] for s in "DE"), -0.25)
    neutral = by_symbol(strategy_targets(BASIC, spec(long={"top": 2}, short={"top": 2}, gross=1.0)))
    assert neutral["A"]["weight"] == 0.25 and neutral["E"]["weight"] == -0.25


@pytest.mark.parametrize(
    ("portfolio", "message"),
    [
        ({"long": {"top": 2, "quantile": 0.2}}, "either `top` or `quantile`"),
        ({"long": {"quantile": 0.7}}, "less than or equal to 0.5"),
        ({"long": {"top": 1}, "short": {"top": 1}, "net": 1.5}, "exceeds gross"),
        ({"long": {"top": 1}, "net": 0.5}, "long-only book has net +gross"),
        ({"long": {"top": 0}}, "at least one leg"),
    ],
)
def test_bad_portfolios_are_refused(portfolio: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        spec(**portfolio)


def _tuned(params: dict[str, Any]) -> StrategySpec:
    return StrategySpec.model_validate(
        {"id": "t", "universe": {"all": True}, "signal": {"score": "mom_20"}, "tuning": {"params": params}}
    )


def test_tuning_space_parses_and_applies() -> None:
    s = _tuned(
        {
            "portfolio.long.top": {"type": "int", "low": 1, "high": 3},
            "portfolio.weighting": {"type": "choice", "choices": ["equal", "inverse_vol"]},
            "rebalance.every": {"type": "int", "low": 1, "high": 21},
        }
    )
    assert s.tuning is not None and s.tuning.n_trials == 100 and s.tuning.objective == "sharpe"
    tuned = apply_params(
        s, {"portfolio.long.top": 3, "portfolio.weighting": "inverse_vol", "rebalance.every": 5}
    )
    assert (tuned.portfolio.long.top, tuned.portfolio.weighting, tuned.rebalance.every) == (
        3,
        "inverse_vol",
        5,
    )
    assert s.portfolio.long.top == 1  # the original is untouched
    with pytest.raises(ValueError, match="no field 'topp'"):
        apply_params(s, {"portfolio.long.topp": 2})
    with pytest.raises(ValueError, match="rebalance.every"):
        apply_params(s, {"rebalance.every": 0})


@pytest.mark.parametrize(
    ("param", "message"),
    [
        ({"type": "int", "low": 3, "high": 1}, "must be below high"),
        ({"type": "float", "low": 0, "high": 1, "log": True}, "low > 0"),
        ({"type": "choice", "choices": ["equal"]}, "at least 2"),
        ({"type": "int", "low": 1}, "takes `low` and `high`"),
    ],
)
def test_bad_tuning_params_are_refused(param: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        _tuned({"portfolio.long.top": param})


def test_tuning_bounds_must_give_valid_strategies(tmp_path: Any) -> None:
    from quantlab.config import ConfigError
    from quantlab.strategy_lab.spec import load_strategy

    path = tmp_path / "t.yaml"
    path.write_text(
        "id: t\nuniverse: {all: true}\nsignal: {score: mom_20}\n"
        "tuning:\n  params:\n    rebalance.every: {type: int, low: 1, high: 500}\n"
    )
    with pytest.raises(ConfigError, match="rebalance.every"):
        load_strategy(path)
