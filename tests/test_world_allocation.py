"""World allocation, world book, risk engine and track (`quantlab.world.allocate`), pure: synthetic frames in.

The Dagster path (ranged run = day-by-day runs through real materializations) is in tests/test_chain.py.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import polars as pl
import pytest
from sklearn.covariance import ledoit_wolf as sk_ledoit_wolf

from quantlab.calendar import sessions
from quantlab.config import ConfigError
from quantlab.schemas import TABLES
from quantlab.world.allocate import (
    WorldRun,
    allocate_world,
    book_exposure,
    book_exposures,
    capped_weights,
    history_start,
    state_from_rows,
)
from quantlab.world.checks import allocation_violations
from quantlab.world.risk_parity import erc_weights, ledoit_wolf, shrunk
from quantlab.world.spec import WorldSpec

MEMBERS = ["a_long", "b_long", "c_short", "d_ls"]
SIDES = ["long", "long", "short", "long_short"]
DAYS = sessions(dt.date(2021, 1, 4), dt.date(2021, 7, 30))
SYMBOLS = ["S1", "S2", "S3", "S4", "S5"]


def world(**over: Any) -> WorldSpec:
    doc: dict[str, Any] = {
        "id": "w",
        "owners": ["tests"],
        "strategies": {"ids": MEMBERS},
        "stages": {"backtest": {"gates": "sharpe_mid >= 0"}, "paper": {"gates": "sharpe_mid >= 0"}},
        "selection": {"score": "sharpe_mid", "topk": {"total": 4}},
        "allocation": {"method": "equal"},
    }
    for key, value in over.items():
        doc[key] = {**doc.get(key, {}), **value} if isinstance(value, dict) else value
    return WorldSpec.model_validate(doc)


def inputs(seed: int = 3, n_days: int | None = None, crash: float = 0.0) -> dict[str, pl.DataFrame]:
    """Decisions (live sets change over time, one evaluate-only stretch), returns (a crash mid-way),
    approved books (the short strategy nets against the longs), volatilities and a few rejections."""
    rng = np.random.default_rng(seed)
    days_ = DAYS[: n_days or len(DAYS)]
    hist = sessions(dt.date(2020, 6, 1), days_[-1])
    net = rng.normal(0.0004, 0.01, (len(hist), len(MEMBERS)))
    net[:, 1] = 0.7 * net[:, 0] + 0.3 * net[:, 1]
    if crash:
        at = hist.index(days_[40])
        net[at : at + 5, :] = -crash  # trips the breaker and the daily loss limit
        net[at + 5 : at + 25, :] = crash / 2  # then a rally: the drawdown recovers under the cap
    returns = pl.DataFrame(
        {
            "date": np.repeat(np.array(hist, dtype="datetime64[D]"), len(MEMBERS)),
            "strategy": MEMBERS * len(hist),
            "net": net.ravel(),
        }
    ).with_columns(pl.col("date").cast(pl.Date))
    rows = []
    for k, d in enumerate(days_):
        for j, m in enumerate(MEMBERS):
            live = (k // 15 + j) % 4 != 0 and not (m == "d_ls" and k < 30) and not 100 <= k < 103
            rows.append(
                {
                    "date": d,
                    "strategy": m,
                    "stage": "live" if live else "paper",
                    "score": float(np.sin(k / 9 + j)),
                    "evaluate_only": 60 <= k < 63,
                }
            )
    decisions = pl.DataFrame(rows)
    books = []
    for d in days_:
        for m, side in zip(MEMBERS, SIDES, strict=True):
            names = rng.choice(SYMBOLS, size=2, replace=False)
            sign = {"long": [1, 1], "short": [-1, -1], "long_short": [1, -1]}[side]
            books += [
                {"date": d, "strategy": m, "symbol": s, "approved_weight": 0.5 * g}
                for s, g in zip(names, sign, strict=True)
            ]
    vol = decisions.select("date", "strategy", vol=pl.lit(0.1) + pl.col("score").abs() / 10)
    rejected = decisions.filter((pl.col("strategy") == "b_long") & (pl.col("date").dt.day() == 15)).select(
        "date", "strategy"
    )
    return {
        "decisions": decisions,
        "returns": returns,
        "books": pl.DataFrame(books),
        "vol": vol,
        "rejected": rejected,
    }


def run(w: WorldSpec, data: dict[str, pl.DataFrame], days_: list[dt.date], state: Any = None) -> WorldRun:
    from quantlab.world.allocate import WorldState

    return allocate_world(
        w,
        MEMBERS,
        SIDES,
        days_,
        data["decisions"].filter(pl.col("date").is_between(days_[0], days_[-1])),
        data["vol"],
        data["returns"].filter(pl.col("date").is_between(history_start(w, days_[0]), days_[-1])),
        data["books"].filter(pl.col("date").is_between(days_[0], days_[-1])),
        data["rejected"],
        state or WorldState(),
    )


def valid(out: WorldRun) -> None:
    for table, df in (
        ("world_allocations", out.allocations),
        ("world_targets", out.targets),
        ("world_returns", out.returns),
        ("world_risk_events", out.events),
    ):
        TABLES[table].schema.validate(df)


RICH = {
    "allocation": {
        "method": "risk_parity",
        "max_weight": 0.45,
        "gross_budget": {"long": 0.8, "short": 0.3, "long_short": 0.5},
        "smoothing": 0.5,
        "max_gross": 0.9,
        "max_net": 0.5,
        "risk_parity": {"window": "20d"},
    },
    "risk": {
        "drawdown_circuit": {"max_dd": 0.05, "cut_to": 0.2, "cooldown": "5d", "resume_below": 0.04},
        "daily_loss": {"limit": 0.02, "cut_to": 0.5},
        "exposure": {"max_symbol": 0.3},
    },
}


@pytest.mark.parametrize("method", ["equal", "inverse_vol", "score", "risk_parity"])
def test_ranged_equals_chunked_with_stored_state(method: str) -> None:
    """Stateful steps (smoothing, circuit breaker, track) give the same rows run whole or in pieces."""
    spec = {**RICH, "allocation": {**RICH["allocation"], "method": method}}
    w = world(**spec)
    data = inputs(crash=0.05)
    whole = run(w, data, DAYS)
    valid(whole)
    assert set(whole.events.get_column("event")) >= {
        "circuit_trip",
        "circuit_release",
        "daily_loss",
        "no_live",
    }
    parts, state = [], None
    for lo, hi in ((0, 1), (1, 41), (41, 42), (42, 61), (61, 90), (90, len(DAYS))):
        chunk = DAYS[lo:hi]
        out = run(w, data, chunk, state)
        parts.append(out)
        last = chunk[-1]
        state = state_from_rows(
            out.allocations.filter(pl.col("date") == last),
            out.targets.filter(pl.col("date") == last),
            out.returns.tail(1).row(0, named=True),
            max(float(p.returns.get_column("equity").max()) for p in parts),
        )
    for name in ("allocations", "targets", "returns", "events"):
        assert pl.concat([getattr(p, name) for p in parts]).equals(getattr(whole, name)), name
    for name, bad in allocation_violations(
        w, whole.allocations, whole.targets, whole.returns, data["decisions"]
    ).items():
        assert bad.is_empty(), (name, bad)


@pytest.mark.parametrize("method", ["equal", "risk_parity"])
def test_book_rows_in_any_order(method: str) -> None:
    """Books read in any row order, with rows of unknown strategies or at zero weight, give the same run
    as the sorted books (usable rows are looked up per run of one (date, strategy))."""
    w = world(**{**RICH, "allocation": {**RICH["allocation"], "method": method}})
    data = inputs(crash=0.05)
    whole = run(w, data, DAYS)
    noise = pl.DataFrame(
        {
            "date": [DAYS[5], DAYS[5], DAYS[70]],
            "strategy": ["zz_unknown", MEMBERS[0], MEMBERS[3]],
            "symbol": ["S9", "S9", "S8"],
            "approved_weight": [0.3, 0.0, 0.0],
        }
    )
    shuffled = pl.concat([data["books"], noise]).sample(fraction=1.0, shuffle=True, seed=7)
    out = run(w, {**data, "books": shuffled}, DAYS)
    for name in ("allocations", "targets", "returns", "events"):
        assert getattr(out, name).equals(getattr(whole, name)), name


def test_circuit_breaker_caps_capital_until_cooldown_and_recovery() -> None:
    w = world(**RICH)
    out = run(w, inputs(crash=0.05), DAYS)
    track = out.returns
    trip = out.events.filter(pl.col("event") == "circuit_trip").row(0, named=True)
    release = out.events.filter(pl.col("event") == "circuit_release").row(0, named=True)
    assert "drawdown" in trip["reason"] and trip["value"] > 0.05
    on_days = track.filter("circuit").get_column("date")
    assert on_days.min() == trip["date"] and on_days.max() < release["date"]
    assert len(sessions(trip["date"], release["date"])) - 1 >= 5  # cooldown
    assert release["value"] <= 0.04  # recovered
    # the allocation decided on a day the breaker is on deploys at most cut_to
    capital = out.allocations.group_by("date").agg(pl.col("weight").sum())
    assert (
        capital.join(track.filter("circuit").select("date"), on="date").get_column("weight").max()
        <= 0.2 + 1e-12
    )
    # the drawdown kept rising after the trip while the cap was on: the breaker held despite it
    assert track.filter(pl.col("date").is_in(on_days.implode())).get_column("drawdown").max() > trip["value"]


def test_world_book_nets_strategies_and_respects_leverage() -> None:
    w = world(allocation={"method": "equal", "max_gross": 0.6})
    data = inputs()
    out = run(w, data, DAYS)
    day = DAYS[50]
    alloc = out.allocations.filter(pl.col("date") == day).select("strategy", "weight")
    combined = (
        data["books"]
        .filter(pl.col("date") == day)
        .join(alloc, on="strategy")
        .group_by("symbol")
        .agg((pl.col("approved_weight") * pl.col("weight")).sum().alias("w"))
        .filter(pl.col("w").abs() > 1e-12)
        .sort("symbol")
    )
    book = out.targets.filter(pl.col("date") == day).sort("symbol")
    assert book.get_column("symbol").to_list() == combined.get_column("symbol").to_list()
    assert np.allclose(book.get_column("weight").to_numpy(), combined.get_column("w").to_numpy(), atol=1e-14)
    gross = out.targets.group_by("date").agg(pl.col("weight").abs().sum())
    assert gross.get_column("weight").max() <= 0.6 + 1e-12
    scaled = out.events.filter(pl.col("event") == "max_gross")
    assert scaled.height and (scaled.get_column("value") > 0.6).all()
    # netting: a symbol both long and short across strategies on some day holds the net
    both = (
        data["books"]
        .join(out.allocations.filter(pl.col("weight") > 0), on=["date", "strategy"])
        .group_by("date", "symbol")
        .agg(
            (pl.col("approved_weight") > 0).any().alias("long"),
            (pl.col("approved_weight") < 0).any().alias("short"),
        )
        .filter("long", "short")
    )
    assert both.height > 0


def test_no_live_strategy_holds_cash_and_says_so() -> None:
    data = inputs()
    data["decisions"] = data["decisions"].with_columns(stage=pl.lit("paper"))
    out = run(world(), data, DAYS[:10])
    assert out.allocations.is_empty() and out.targets.is_empty()
    assert (out.returns.get_column("exposure") == 0).all() and (out.returns.get_column("equity") == 1.0).all()
    events = out.events
    assert events.get_column("event").to_list() == ["no_live"] * 10
    assert events.get_column("reason")[0] == "no live strategy: the world holds cash"


def test_risk_parity_estimators() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(60, 5)) * [1, 2, 3, 0.5, 1]
    assert np.allclose(ledoit_wolf(x[None])[0], sk_ledoit_wolf(x)[0], atol=1e-15)
    cov = ledoit_wolf(np.stack([x, x[:, ::-1] @ rng.normal(size=(5, 5))]))
    w, ok = erc_weights(cov)
    assert ok.all() and np.allclose(w.sum(axis=1), 1.0) and (w > 0).all()
    rc = w * np.einsum("gij,gj->gi", cov, w)
    assert np.allclose(rc / rc.sum(axis=1, keepdims=True), 0.2, atol=1e-12)
    diag, _ = erc_weights(np.diag([1.0, 4.0, 16.0])[None])
    assert np.allclose(diag[0], np.array([1, 1 / 2, 1 / 4]) / 1.75)  # uncorrelated: w ~ 1 / sigma
    # a duplicated column is singular without shrinkage, and fine with it
    dup = np.column_stack([x[:, 0], x[:, 0], x[:, 1]])[None]
    assert not erc_weights(shrunk(dup, 0.0))[1][0]
    assert erc_weights(shrunk(dup, 0.2))[1][0] and erc_weights(ledoit_wolf(dup))[1][0]
    assert not erc_weights(ledoit_wolf(np.zeros((1, 20, 3))))[1][0]  # no variance at all


def test_singular_covariance_falls_back_to_equal_weights() -> None:
    data = inputs()
    same = data["returns"].filter(pl.col("strategy") == "a_long")
    data["returns"] = pl.concat([same.with_columns(strategy=pl.lit(m)) for m in MEMBERS])
    w = world(allocation={"method": "risk_parity", "risk_parity": {"window": "20d", "shrinkage": 0.0}})
    out = run(w, data, DAYS[:20])
    ev = out.events.filter(pl.col("event") == "singular_covariance")
    several = out.allocations.group_by("date").len().filter(pl.col("len") > 1)
    assert several.height > 10 and set(ev.get_column("date")) == set(several.get_column("date"))
    assert "singular: equal weights" in ev.get_column("reason")[0]
    per_day = out.allocations.filter(pl.col("weight") > 0).group_by("date").agg(pl.col("weight").n_unique())
    assert (per_day.get_column("weight") == 1).all()


def test_full_investment_redistributes_and_reports_unmeetable_budgets() -> None:
    raw = np.array([[0.7, 0.2, 0.1, 0.0], [0.7, 0.3, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    live = raw > 0
    w, unmet = capped_weights(raw, live, 0.4, full=True)
    assert np.allclose(w[0], [0.4, 0.4, 0.2, 0.0]) and not unmet[0]
    assert np.allclose(w[1], [0.4, 0.4, 0.0, 0.0]) and unmet[1]  # 0.4 x 2 < 1: each at the cap
    assert np.allclose(w[2], 0.0) and not unmet[2]  # nothing live: cash
    w, unmet = capped_weights(raw, live, 0.4, full=False)
    assert np.allclose(w[0], [0.4, 0.2, 0.1, 0.0]) and not unmet.any()  # the cut stays in cash
    spec = world(allocation={"method": "equal", "max_weight": 0.4, "full_investment": True})
    out = run(spec, inputs(), DAYS[:35])
    ev = out.events.filter(pl.col("event") == "budget_unmet")
    two_live = (
        out.allocations.group_by("date")
        .agg(pl.len().alias("n"), pl.col("weight").sum())
        .filter(pl.col("n") == 2)
    )
    assert two_live.height and np.allclose(two_live.get_column("weight").to_numpy(), 0.8)
    few = out.allocations.group_by("date").len().filter(pl.col("len") <= 2)  # 0.4 x 2 < 1
    assert set(ev.get_column("date")) == set(few.get_column("date"))
    assert "0.4 x 2 = 0.80; the rest is cash" in ev.get_column("reason")[0]


@pytest.mark.parametrize(
    ("allocation", "message"),
    [
        ({"max_weight": 0.2, "full_investment": True}, "max_weight 0.2 x topk.total 4 < 1"),
        ({"gross_budget": {"long": -0.5}}, "gross_budget.long: Input should be greater than or equal to 0"),
        ({"max_weight": -0.1}, "max_weight: Input should be greater than 0"),
        ({"smoothing": 1.0}, "smoothing: Input should be less than 1"),
        ({"risk_parity": {"shrinkage": 1.5}}, "risk_parity.shrinkage"),
    ],
)
def test_bad_allocation_config_is_a_load_error(tmp_path: Any, allocation: dict, message: str) -> None:
    import yaml

    from quantlab.project import Project

    root = tmp_path
    (root / "strategies").mkdir()
    (root / "worlds").mkdir()
    strategy = {
        "id": "s1",
        "tags": ["t"],
        "universe": {"symbols": ["A", "B"]},
        "signal": {"kind": "rank", "score": "mom_20"},
        "portfolio": {"long": {"top": 1}},
    }
    for k in range(4):
        (root / "strategies" / f"s{k}.yaml").write_text(yaml.safe_dump({**strategy, "id": f"s{k}"}))
    doc = world().model_dump(mode="json", exclude_defaults=True)
    doc.update(strategies={"tags": ["t"]}, allocation=allocation)
    (root / "worlds" / "w.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        Project(root).worlds  # noqa: B018


def test_score_method_never_gives_a_negative_weight() -> None:
    data = inputs()
    out = run(world(allocation={"method": "score"}), data, DAYS[:60])
    joined = out.allocations.join(data["decisions"], on=["date", "strategy"])
    assert (out.allocations.get_column("weight") >= 0).all()
    neg = joined.filter(pl.col("score") < 0)
    mixed = joined.group_by("date").agg((pl.col("score") > 0).any().alias("any_pos"))
    neg = neg.join(mixed.filter("any_pos"), on="date")
    assert neg.height and (neg.get_column("weight") == 0).all()


def test_smoothing_blends_with_the_previous_allocation() -> None:
    data = inputs()
    plain = run(world(), data, DAYS[:40])
    smooth = run(world(allocation={"smoothing": 0.5}), data, DAYS[:40])
    a = plain.allocations.pivot(on="strategy", index="date", values="weight").sort("date").fill_null(0.0)
    b = smooth.allocations.pivot(on="strategy", index="date", values="weight").sort("date").fill_null(0.0)
    live = (
        data["decisions"]
        .filter(pl.col("date") <= DAYS[39])
        .pivot(on="strategy", index="date", values="stage")
    )
    for m in MEMBERS:
        ta, tb = a.get_column(m).to_numpy(), b.get_column(m).to_numpy()
        rejected = data["rejected"].filter(pl.col("strategy") == m).get_column("date").to_list()
        still = ((live.get_column(m) == "live") & ~live.get_column("date").is_in(rejected)).to_numpy()
        for k in range(1, 40):
            expect = 0.5 * tb[k - 1] + 0.5 * ta[k] if still[k] else 0.0
            assert tb[k] == pytest.approx(expect, abs=1e-15), (m, k)


def test_no_books_gives_an_empty_typed_world_book() -> None:
    data = inputs()
    data["books"] = data["books"].head(0)
    out = run(world(**RICH), data, DAYS[:5])
    valid(out)
    assert out.targets.is_empty() and out.allocations.height > 0


def test_book_exposures_per_session_equal_one_book_at_a_time() -> None:
    """The world track's gross/net exposure of every session at once (empty books in the middle and at
    the end included) gives the same bits as the stored state's, one book at a time."""
    rng = np.random.default_rng(3)
    w = rng.normal(0.0, 0.1, 40)
    bounds = np.array([0, 3, 3, 15, 16, 40, 40])
    gross, net = book_exposures(w, bounds)
    for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        assert (gross[i], net[i]) == book_exposure(w[lo:hi])
        assert gross[i] == pytest.approx(np.abs(w[lo:hi]).sum(), abs=1e-15)
        assert net[i] == pytest.approx(w[lo:hi].sum(), abs=1e-15)
    assert gross[1] == net[1] == gross[5] == 0.0
    assert book_exposure(np.zeros(0)) == (0.0, 0.0)
    assert [x.tolist() for x in book_exposures(w, np.array([0]))] == [[], []]
