"""Forward (total-return) adjustment of raw bars by their splits and dividends."""

from __future__ import annotations

import datetime as dt
import math

import polars as pl
import pytest

from quantlab.curator.adjust import RAW_SCHEMA, apply_actions
from quantlab.curator.contract import OHLCV_SCHEMA

D = [dt.date(2024, 3, d) for d in (11, 12, 13, 14, 15, 18)]


def raw(
    closes: list[float],
    *,
    symbol: str = "IBM",
    dividend: dict[int, float] | None = None,
    split: dict[int, float] | None = None,
) -> pl.DataFrame:
    n = len(closes)
    dividend, split = dividend or {}, split or {}
    return pl.DataFrame(
        {
            "symbol": [symbol] * n,
            "date": D[:n],
            "open": [c * 0.99 for c in closes],
            "high": [c * 1.01 for c in closes],
            "low": [c * 0.98 for c in closes],
            "close": closes,
            "volume": [1_000_000 + i for i in range(n)],
            "dividend": [dividend.get(i, 0.0) for i in range(n)],
            "split": [split.get(i, 1.0) for i in range(n)],
        },
        schema=RAW_SCHEMA,
    )


def test_no_actions_constant_factor():
    bars = raw([190.0, 191.5, 189.2, 192.0])
    out = apply_actions(bars)
    assert out.schema == pl.Schema(OHLCV_SCHEMA)
    assert out["adj_factor"].to_list() == [1.0] * 4
    for col in ("open", "high", "low", "close"):
        assert out[col].equals(bars[col])
    assert out["close_raw"].equals(bars["close"])
    assert out["volume"].equals(bars["volume"])


def test_hand_computed_split_and_dividend():
    # 2024-03-13: 1.66 dividend on a 188.00 close; 2024-03-15: 2:1 split (raw close halves)
    out = apply_actions(raw([190.0, 189.0, 188.0, 187.0, 93.0], dividend={2: 1.66}, split={4: 2.0}))
    f = 1 + 1.66 / 188.0
    assert out["adj_factor"].to_list() == pytest.approx([1.0, 1.0, f, f, 2 * f], rel=1e-15)
    assert out["close"].to_list() == pytest.approx([190.0, 189.0, 188.0 * f, 187.0 * f, 93.0 * 2 * f])
    assert out["open"][4] == pytest.approx(93.0 * 0.99 * 2 * f)
    assert out["close_raw"].to_list() == [190.0, 189.0, 188.0, 187.0, 93.0]


def test_adjusted_returns_equal_total_returns():
    closes = [190.0, 188.4, 189.9, 95.1, 94.0, 96.2]
    bars = raw(closes, dividend={1: 1.66, 4: 0.83}, split={3: 2.0, 5: 0.5})  # a reverse split too
    out = apply_actions(bars)
    total = bars["split"] * (bars["close"] + bars["dividend"]) / bars["close"].shift(1)
    adjusted = out["close"] / out["close"].shift(1)
    assert (adjusted - total).abs().drop_nulls().max() < 1e-12
    assert (out["close"] / out["close_raw"] - out["adj_factor"]).abs().max() < 1e-12


def test_symbols_are_independent_and_sorted():
    a = raw([100.0, 50.0, 51.0], symbol="ZZZ", split={1: 2.0})
    b = raw([20.0, 21.0, 10.0], symbol="AAA", split={2: 2.0})
    mixed = pl.concat([a, b]).sample(fraction=1.0, shuffle=True, seed=3)
    out = apply_actions(mixed)
    assert out.select("symbol", "date").equals(pl.concat([b, a]).select("symbol", "date"))
    assert out["adj_factor"].to_list() == [1.0, 1.0, 2.0, 1.0, 2.0, 2.0]


def test_action_on_the_first_bar_is_ignored():
    out = apply_actions(raw([100.0, 101.0], split={0: 2.0}, dividend={0: 1.0}))
    assert out["adj_factor"].to_list() == [1.0, 1.0]


def test_empty_input():
    out = apply_actions(pl.DataFrame(schema=RAW_SCHEMA))
    assert out.height == 0 and out.schema == pl.Schema(OHLCV_SCHEMA)


@pytest.mark.parametrize("bad", [0.0, -2.0, math.nan, math.inf, None])
def test_bad_split_rejected(bad):
    bars = raw([100.0, 50.0, 51.0]).with_columns(
        pl.when(pl.col("date") == D[1])
        .then(pl.lit(bad, dtype=pl.Float64))
        .otherwise(pl.col("split"))
        .alias("split")
    )
    with pytest.raises(ValueError, match=r"split.*IBM on 2024-03-12"):
        apply_actions(bars)


@pytest.mark.parametrize("bad", [-0.5, math.nan, math.inf, None])
def test_bad_dividend_rejected(bad):
    bars = raw([100.0, 99.0, 98.0]).with_columns(
        pl.when(pl.col("date") == D[2])
        .then(pl.lit(bad, dtype=pl.Float64))
        .otherwise(pl.col("dividend"))
        .alias("dividend")
    )
    with pytest.raises(ValueError, match=r"dividend.*IBM on 2024-03-13"):
        apply_actions(bars)


def test_dividend_on_a_zero_close_rejected():
    with pytest.raises(ValueError, match="IBM on 2024-03-12"):
        apply_actions(raw([100.0, 0.0], dividend={1: 1.0}))


def test_zero_close_without_actions_passes_through():
    out = apply_actions(raw([100.0, 0.0, 101.0]))  # the quality gate flags it, not the adjustment
    assert out["adj_factor"].to_list() == [1.0, 1.0, 1.0]


def test_missing_column():
    with pytest.raises(ValueError, match="split"):
        apply_actions(raw([100.0]).drop("split"))
