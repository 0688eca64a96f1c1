"""Tests of quantlab.backtest.report: KPI parity with quantlab.metrics, markdown content, PNG, files."""

from __future__ import annotations

import datetime as dt
import io
import math
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from quantlab import metrics as m
from quantlab.backtest.report import (
    KPI_KEYS,
    StrategyReport,
    equity_png_name,
    strategy_report,
    trades_csv,
    write_reports,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _returns(strategy: str = "mom", n: int = 260, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    dates = [dt.date(2023, 1, 2) + dt.timedelta(days=i) for i in range(n)]
    gross = rng.normal(5e-4, 0.01, n)
    cost = np.where(rng.random(n) < 0.2, rng.uniform(1e-4, 5e-4, n), 0.0)
    return pl.DataFrame(
        {
            "date": dates,
            "strategy": strategy,
            "gross": gross,
            "cost": cost,
            "net": gross - cost,
            "long_ret": gross * 0.6,
            "short_ret": gross * 0.4,
            "turnover": rng.uniform(0.0, 0.5, n),
            "gross_exposure": rng.uniform(0.8, 1.2, n),
            "net_exposure": rng.uniform(-0.1, 0.1, n),
        }
    )


def _trades(strategy: str = "mom") -> pl.DataFrame:
    wc = [0.05, -0.30, 0.12, -0.01, 0.25, 0.30, -0.07]
    return pl.DataFrame(
        {
            "date": [dt.date(2023, 1, 5)] * 3 + [dt.date(2023, 1, 3)] * 2 + [dt.date(2023, 2, 1)] * 2,
            "strategy": strategy,
            "symbol": ["AAA", "BBB", "CCC", "DDD", "EEE", "FFF", "GGG"],
            "side": ["buy" if w > 0 else "sell" for w in wc],
            "weight_change": wc,
            "price": [10.0, 20.5, 31.0, 40.0, 1234.5, 60.0, 70.0],
            "cost": [abs(w) * 5e-4 for w in wc],
        }
    )


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-12, abs=1e-15)


def _png_size(data: bytes) -> tuple[int, int]:
    from matplotlib.image import imread

    img = imread(io.BytesIO(data), format="png")
    return img.shape[1], img.shape[0]


def test_kpis_equal_metrics_functions() -> None:
    ret = _returns()
    rep = strategy_report("mom", ret, _trades())
    net, gross = ret["net"].to_numpy(), ret["gross"].to_numpy()
    expected = {
        "sharpe": m.sharpe_ratio(net),
        "sharpe_gross": m.sharpe_ratio(gross),
        "sortino": m.sortino_ratio(net),
        "cagr": m.annual_return(net),
        "cagr_gross": m.annual_return(gross),
        "annual_volatility": m.annual_volatility(net),
        "max_drawdown": m.max_drawdown(net),
        "calmar": m.calmar_ratio(net),
        "ulcer_index": m.ulcer_index(net),
        "hit_rate": m.hit_rate(net),
        "tail_ratio": m.tail_ratio(net),
        "var_5": m.value_at_risk(net, 0.05),
        "stability": m.stability(net),
        "psr": m.probabilistic_sharpe_ratio(net),
        "mean_turnover": m.turnover(ret["turnover"].to_numpy()),
        "cost_share": ret["cost"].sum() / ret["gross"].sum(),
        "avg_gross_exposure": ret["gross_exposure"].mean(),
        "avg_net_exposure": ret["net_exposure"].mean(),
        "n_trades": 7.0,
        "sessions": 260.0,
    }
    assert set(rep.kpis) == set(KPI_KEYS) == set(expected)
    for key, value in expected.items():
        assert _same(rep.kpis[key], value), key
    assert rep.strategy == "mom"


def test_returns_order_and_other_strategies_do_not_matter() -> None:
    ret = _returns()
    base = strategy_report("mom", ret, _trades())
    mixed = pl.concat([ret.sample(fraction=1.0, shuffle=True, seed=3), _returns("other", seed=9)])
    trades = pl.concat([_trades(), _trades("other")])
    rep = strategy_report("mom", mixed, trades)
    assert rep.kpis == pytest.approx(base.kpis, nan_ok=True)
    assert rep.markdown == base.markdown


def test_markdown_rows_period_and_image_link() -> None:
    ret = _returns()
    rep = strategy_report("mom", ret, _trades(), png_name="img/mom.png")
    md = rep.markdown
    assert md.startswith("## mom\n")
    assert "Period: 2023-01-02 .. 2023-09-18 (260 sessions)" in md
    k = rep.kpis
    assert f"| Sharpe (net) | {k['sharpe']:.2f} |" in md
    assert f"| Sharpe (gross) | {k['sharpe_gross']:.2f} |" in md
    assert f"| CAGR (net) | {k['cagr']:.2%} |" in md
    assert f"| CAGR (gross) | {k['cagr_gross']:.2%} |" in md
    assert f"| Max drawdown | {k['max_drawdown']:.2%} |" in md
    assert f"| VaR 5% (daily) | {k['var_5']:.2%} |" in md
    assert f"| Cost share of gross PnL | {k['cost_share']:.2%} |" in md
    assert f"| Mean daily turnover | {k['mean_turnover']:.2%} |" in md
    assert "| Trades | 7 |" in md
    for label in ("Sortino", "Annual volatility", "Calmar", "Ulcer index", "Hit rate", "Tail ratio"):
        assert f"| {label}" in md
    for label in ("Stability", "PSR", "Avg gross exposure", "Avg net exposure"):
        assert f"| {label}" in md
    assert "![equity](img/mom.png)" in md
    assert "![equity](mom_equity.png)" in strategy_report("mom", ret, _trades()).markdown


def test_largest_trades_in_order() -> None:
    rep = strategy_report("mom", _returns(), _trades(), top_trades=4)
    md = rep.markdown
    # |0.30| tie: earlier date first (BBB 2023-01-05 before FFF 2023-02-01), then EEE 0.25, CCC 0.12
    rows = [line for line in md.splitlines() if re.match(r"\| \d{4}-\d\d-\d\d \|", line)]
    assert [r.split("|")[2].strip() for r in rows] == ["BBB", "FFF", "EEE", "CCC"]
    assert rows[0] == "| 2023-01-05 | BBB | sell | -30.00% | 20.50 | 1.50 |"
    assert rows[2] == "| 2023-01-03 | EEE | buy | +25.00% | 1,234.50 | 1.25 |"
    assert "top 4" in md
    assert "Largest trades" not in strategy_report("mom", _returns(), _trades(), top_trades=0).markdown
    assert "Largest trades" not in strategy_report("mom", _returns(), _trades().head(0)).markdown


def _tiny(gross: list[float], cost: list[float]) -> pl.DataFrame:
    n = len(gross)
    return pl.DataFrame(
        {
            "date": [dt.date(2024, 1, 2 + i) for i in range(n)],
            "gross": gross,
            "cost": cost,
            "net": [g - c for g, c in zip(gross, cost, strict=True)],
            "long_ret": gross,
            "short_ret": [0.0] * n,
            "turnover": [0.1] * n,
            "gross_exposure": [1.0] * n,
            "net_exposure": [0.5] * n,
        }
    )


def test_cost_share_hand_computed_and_guarded() -> None:
    # total cost 0.003 / gross PnL (0.01 + 0.02 - 0.01 = 0.02) = 15%
    rep = strategy_report("t", _tiny([0.01, 0.02, -0.01], [0.001, 0.0, 0.002]), pl.DataFrame())
    assert rep.kpis["cost_share"] == pytest.approx(0.15)
    assert "| Cost share of gross PnL | 15.00% |" in rep.markdown
    assert rep.kpis["avg_gross_exposure"] == 1.0 and rep.kpis["avg_net_exposure"] == 0.5
    assert "| Avg net exposure | 50.00% |" in rep.markdown
    for gross in ([0.01, -0.02, 0.0], [0.01, -0.01, 0.0]):  # negative and zero gross PnL
        rep = strategy_report("t", _tiny(gross, [0.001, 0.0, 0.0]), pl.DataFrame())
        assert math.isnan(rep.kpis["cost_share"])
        assert "| Cost share of gross PnL | n/a |" in rep.markdown


def test_png_signature_and_size() -> None:
    rep = strategy_report("mom", _returns(), _trades())
    assert rep.equity_png.startswith(PNG_SIGNATURE)
    assert len(rep.equity_png) < 150_000
    w, h = _png_size(rep.equity_png)
    assert abs(w - 900) <= 10 and abs(h - 500) <= 10


def test_single_session_gives_na_kpis_and_a_png() -> None:
    rep = strategy_report("one", _tiny([0.01], [0.0]), pl.DataFrame())
    assert math.isnan(rep.kpis["sharpe"]) and rep.kpis["sessions"] == 1.0
    assert "| Sharpe (net) | n/a |" in rep.markdown
    assert rep.equity_png.startswith(PNG_SIGNATURE)


@pytest.mark.parametrize("returns", [pl.DataFrame(), _returns().head(0)])
def test_empty_returns(returns: pl.DataFrame) -> None:
    rep = strategy_report("new", returns, pl.DataFrame())
    assert rep.equity_png == b""
    assert rep.markdown.startswith("## new\n")
    assert "No backtest returns yet" in rep.markdown
    assert "![equity]" not in rep.markdown
    assert set(rep.kpis) == set(KPI_KEYS)
    assert rep.kpis["sessions"] == 0.0 and rep.kpis["n_trades"] == 0.0
    assert math.isnan(rep.kpis["sharpe"])


def test_write_reports_files_links_and_idempotence(tmp_path: Path) -> None:
    reps = [
        strategy_report("mom", _returns(), _trades()),
        strategy_report("rev", _returns("rev", seed=1), _trades("rev")),
        strategy_report("new", pl.DataFrame(), pl.DataFrame()),
    ]
    out = tmp_path / "run" / "reports"
    md_path = write_reports(reps, out)
    assert md_path == out / "backtest_summary.md"
    md = md_path.read_text()
    assert md.startswith("# Backtest summary\n")
    links = re.findall(r"!\[equity\]\(([^)]+)\)", md)
    assert links == ["mom_equity.png", "rev_equity.png"]
    for link in links:
        assert (md_path.parent / link).read_bytes().startswith(PNG_SIGNATURE)
    assert not (out / "new_equity.png").exists()
    # run-level table: one row per strategy, before the sections, in the given order
    table = [line for line in md.split("## ")[0].splitlines() if line.startswith("| ")]
    assert [r.split("|")[1].strip() for r in table[1:]] == ["mom", "rev", "new"]
    assert f"| {reps[0].kpis['sharpe']:.2f} |" in table[1]
    for rep in reps:
        assert rep.markdown.rstrip("\n") in md
    assert md.index("## mom") < md.index("## rev") < md.index("## new")

    # idempotent: same content again; a strategy that lost its chart loses its file
    assert write_reports(reps, out).read_text() == md
    assert (out / "mom_equity.png").read_bytes() == reps[0].equity_png
    write_reports([strategy_report("mom", pl.DataFrame(), pl.DataFrame())], out)
    assert not (out / "mom_equity.png").exists()
    assert "rev" not in md_path.read_text()


def test_write_reports_rejects_bad_input(tmp_path: Path) -> None:
    rep = strategy_report("mom", _returns(), _trades())
    with pytest.raises(ValueError, match="duplicate"):
        write_reports([rep, rep], tmp_path)
    with pytest.raises(ValueError, match="does not link"):
        write_reports([strategy_report("mom", _returns(), _trades(), png_name="x.png")], tmp_path)
    with pytest.raises(ValueError, match="cannot name a file"):
        write_reports([StrategyReport("../up", "## x", b"", {})], tmp_path)
    empty = write_reports([], tmp_path / "e")
    assert "No strategies" in empty.read_text()
    assert equity_png_name("mom") == "mom_equity.png"


def test_trades_csv_round_trip(tmp_path: Path) -> None:
    trades = pl.concat([_trades("zeta"), _trades("alpha")])
    path = trades_csv(trades, tmp_path / "sub" / "trades.csv")
    assert path == tmp_path / "sub" / "trades.csv"
    back = pl.read_csv(path, try_parse_dates=True)
    expected = trades.sort("date", "strategy", "symbol")
    assert back.columns == trades.columns
    assert back.equals(expected)
    assert back["date"].dtype == pl.Date
    assert back.select("date", "strategy", "symbol").rows()[:3] == [
        (dt.date(2023, 1, 3), "alpha", "DDD"),
        (dt.date(2023, 1, 3), "alpha", "EEE"),
        (dt.date(2023, 1, 3), "zeta", "DDD"),
    ]


def test_trades_csv_empty(tmp_path: Path) -> None:
    path = trades_csv(pl.DataFrame(), tmp_path / "trades.csv")
    back = pl.read_csv(path)
    assert back.is_empty()
    assert back.columns == ["date", "strategy", "symbol", "side", "weight_change", "price", "cost"]
