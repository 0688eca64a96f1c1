"""Tests for quantlab.backtest.engine: a loop reference model, look-ahead, hand cases, bad inputs."""

from __future__ import annotations

import math
from dataclasses import fields

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quantlab.backtest import engine
from quantlab.backtest.engine import BacktestResult, ExecutionConfig, run_backtest

DAILY = ("gross", "cost", "net", "long_ret", "short_ret", "turnover", "gross_exposure", "net_exposure")
TRADES = ("trade_day", "trade_symbol", "trade_dw", "trade_price", "trade_cost")
EXTRA_DAILY = ("cash_ret", "capped_trades")  # the optional features' outputs (0 when unused)


# --------------------------------------------------------------------------------------------------
# Reference: currency holdings, a cash account, explicit trades, plain Python loops.
# --------------------------------------------------------------------------------------------------
def reference(
    open_, close, targets, rebalance, cfg: ExecutionConfig, cash_return=None, adv=None
) -> dict[str, np.ndarray]:
    """Cash earns ``cash_return[t]`` at close t; orders are cut to ``cap * adv[decision day]`` (capital units)."""
    T, N = open_.shape
    cap = cfg.participation_cap
    rate = (cfg.fee_bps + cfg.slippage_bps) / 1e4
    off = 0 if cfg.price == "open" else 1
    schedule = {}  # price point -> decision day
    for t in range(T):
        if rebalance[t] and t + cfg.lag < T:
            schedule[2 * (t + cfg.lag) + off] = t

    cash = 1.0
    shares = [0.0] * N
    last = [math.nan] * N  # last known price of each symbol

    def value() -> float:
        return cash + sum(shares[i] * last[i] for i in range(N) if shares[i] != 0.0)

    out = {k: [] for k in (*DAILY, *EXTRA_DAILY)}
    out["weights"] = []
    trades = {k: [] for k in (*TRADES, "trade_capped")}
    prev_close_value = 1.0
    for t in range(T):
        day_factor = 1.0  # gross value factor of the day so far (costs excluded)
        long_ret = short_ret = cash_ret = 0.0
        turnover = 0.0
        n_capped = 0
        for j, prices in ((0, open_[t]), (1, close[t])):
            start_value = value()
            long_pnl = short_pnl = 0.0
            for i in range(N):
                if math.isnan(prices[i]):
                    continue
                if shares[i] > 0:
                    long_pnl += shares[i] * (prices[i] - last[i])
                elif shares[i] < 0:
                    short_pnl += shares[i] * (prices[i] - last[i])
                last[i] = prices[i]
            cash_pnl = cash * cash_return[t] if (j == 1 and cash_return is not None) else 0.0
            cash += cash_pnl
            long_ret += day_factor * long_pnl / start_value
            short_ret += day_factor * short_pnl / start_value
            cash_ret += day_factor * cash_pnl / start_value
            day_factor *= (start_value + long_pnl + short_pnl + cash_pnl) / start_value

            point = 2 * t + j
            if point in schedule:
                d = schedule[point]
                v_pre = value()
                w = [
                    0.0 if (math.isnan(targets[d][i]) or math.isnan(prices[i])) else targets[d][i]
                    for i in range(N)
                ]
                notional = [
                    w[i] * v_pre - shares[i] * last[i] if shares[i] != 0.0 else w[i] * v_pre for i in range(N)
                ]
                capped = [False] * N
                if cap is not None:
                    for i in range(N):
                        limit = 0.0 if math.isnan(adv[d][i]) else cap * adv[d][i]  # currency, capital = 1
                        if abs(notional[i]) > limit:
                            held = shares[i] * last[i] if shares[i] != 0.0 else 0.0
                            capped[i] = abs(notional[i]) / v_pre > 1e-12
                            n_capped += capped[i]
                            notional[i] = math.copysign(limit, notional[i])
                            w[i] = (held + notional[i]) / v_pre  # executed weight, applied post-cost
                fee = sum(abs(x) for x in notional) * rate
                turnover += sum(abs(x) for x in notional) / v_pre
                v_post = v_pre - fee
                for i in range(N):
                    dw = notional[i] / v_pre
                    if abs(dw) > 1e-12:
                        trades["trade_day"].append(t)
                        trades["trade_symbol"].append(i)
                        trades["trade_dw"].append(dw)
                        trades["trade_price"].append(last[i])
                        trades["trade_cost"].append(abs(dw) * rate)
                        trades["trade_capped"].append(capped[i])
                cash = v_post
                for i in range(N):
                    shares[i] = w[i] * v_post / last[i] if w[i] != 0.0 else 0.0
                    cash -= shares[i] * last[i] if w[i] != 0.0 else 0.0

        v_close = value()
        out["gross"].append(day_factor - 1.0)
        out["net"].append(v_close / prev_close_value - 1.0)
        out["cost"].append(out["gross"][-1] - out["net"][-1])
        out["long_ret"].append(long_ret)
        out["short_ret"].append(short_ret)
        out["cash_ret"].append(cash_ret)
        out["capped_trades"].append(n_capped)
        out["turnover"].append(turnover)
        w_close = [shares[i] * last[i] / v_close if shares[i] != 0.0 else 0.0 for i in range(N)]
        out["weights"].append(w_close)
        out["gross_exposure"].append(sum(abs(x) for x in w_close))
        out["net_exposure"].append(sum(w_close))
        prev_close_value = v_close
    res = {k: np.array(v, dtype=float) for k, v in out.items()}
    res["weights"] = res["weights"].reshape(T, N)
    for k, v in trades.items():
        res[k] = np.array(
            v, dtype={"trade_day": int, "trade_symbol": int, "trade_capped": bool}.get(k, float)
        )
    res["capped_trades"] = res["capped_trades"].astype(np.int64)
    return res


# --------------------------------------------------------------------------------------------------
# Data helpers
# --------------------------------------------------------------------------------------------------
def make_prices(rng: np.random.Generator, T: int, N: int, gaps: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Random-walk opens/closes; late listings, a delisting and interior holes when ``gaps``."""
    steps = rng.normal(0.0, 0.03, size=(2 * T, N))
    p = 20.0 * np.exp(np.cumsum(steps, axis=0)) * rng.uniform(0.5, 2.0, size=N)
    open_, close = p[0::2].copy(), p[1::2].copy()
    if gaps and N >= 3:
        open_[: T // 3, 0] = np.nan  # late listing: no bar at all
        close[: T // 3, 0] = np.nan
        open_[: T // 2, 1] = np.nan  # listed at a close, its first open comes the day after
        close[: T // 2 - 1, 1] = np.nan
        open_[T - 5 :, 2] = np.nan  # delisted: held price carried forward
        close[T - 5 :, 2] = np.nan
        holes = rng.random((T, N)) < 0.05
        holes[:, :3] = False
        open_[holes] = np.nan
        close[np.roll(holes, 1, axis=0)] = np.nan
    return open_, close


def make_targets(rng: np.random.Generator, T: int, N: int, long_only: bool = False) -> np.ndarray:
    raw = rng.normal(size=(T, N))
    if long_only:
        raw = np.abs(raw)
    w = raw / np.abs(raw).sum(axis=1, keepdims=True) * rng.uniform(0.5, 1.5, size=(T, 1))
    w[rng.random((T, N)) < 0.1] = np.nan
    w[rng.random(T) < 0.1] = 0.0
    return w


def make_adv(rng: np.random.Generator, T: int, N: int) -> np.ndarray:
    """ADV in capital units spread over two orders of magnitude, with unknown (NaN) entries."""
    adv = np.exp(rng.uniform(np.log(0.1), np.log(10.0), size=(T, N)))
    adv[rng.random((T, N)) < 0.05] = np.nan
    return adv


def every(T: int, k: int, phase: int = 0) -> np.ndarray:
    return (np.arange(T) % k) == phase


def assert_matches(res: BacktestResult, ref: dict[str, np.ndarray], tol: float = 1e-10) -> None:
    for k in (*DAILY, "cash_ret", "weights", "trade_dw", "trade_price", "trade_cost"):
        np.testing.assert_allclose(getattr(res, k), ref[k], rtol=0, atol=tol, err_msg=k)
    for k in ("trade_day", "trade_symbol", "trade_capped", "capped_trades"):
        np.testing.assert_array_equal(getattr(res, k), ref[k], err_msg=k)
        assert getattr(res, k).dtype == ref[k].dtype, k


@pytest.fixture(params=[None, 1, 3], ids=["one-chunk", "chunk1", "chunk3"])
def chunking(request, monkeypatch):
    """Run the engine with its default chunking and with tiny chunks (boundaries everywhere)."""
    if request.param is not None:
        monkeypatch.setattr(engine, "_CHUNK_BYTES", 0)
        monkeypatch.setattr(engine, "_MIN_CHUNK_DAYS", request.param)
    return request.param


# --------------------------------------------------------------------------------------------------
# Agreement with the reference
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("price", ["open", "close"])
@pytest.mark.parametrize("lag", [1, 2])
@pytest.mark.parametrize("k", [1, 3])
def test_matches_reference(chunking, price, lag, k):
    rng = np.random.default_rng(1000 * lag + 10 * k + (price == "open"))
    T, N = 30, 6
    open_, close = make_prices(rng, T, N)
    targets = make_targets(rng, T, N)
    rebalance = every(T, k, phase=1 % k)
    cfg = ExecutionConfig(price=price, lag=lag, fee_bps=5.0, slippage_bps=7.5)
    res = run_backtest(open_, close, targets, rebalance, cfg)
    ref = reference(open_, close, targets, rebalance, cfg)
    assert res.trade_day.size > 0
    assert np.any(res.short_ret != 0)
    assert_matches(res, ref)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    T=st.integers(1, 25),
    N=st.integers(1, 5),
    price=st.sampled_from(["open", "close"]),
    lag=st.integers(1, 3),
    k=st.integers(1, 4),
    fee=st.sampled_from([0.0, 3.0, 25.0]),
    gaps=st.booleans(),
    long_only=st.booleans(),
    chunk=st.sampled_from([None, 1, 2]),
    cash=st.booleans(),
    cap=st.sampled_from([None, 0.02, 0.2, 1.0]),
)
def test_matches_reference_property(seed, T, N, price, lag, k, fee, gaps, long_only, chunk, cash, cap):
    rng = np.random.default_rng(seed)
    open_, close = make_prices(rng, T, N, gaps=gaps)
    if gaps:  # random holes anywhere, including the first rows
        open_[rng.random((T, N)) < 0.15] = np.nan
        close[rng.random((T, N)) < 0.15] = np.nan
    targets = make_targets(rng, T, N, long_only=long_only)
    rebalance = rng.random(T) < 1.0 / k
    cash_return = rng.normal(0.0, 0.01, size=T) if cash else None
    adv = make_adv(rng, T, N) if cap is not None else None
    cfg = ExecutionConfig(price=price, lag=lag, fee_bps=fee, slippage_bps=fee / 2, participation_cap=cap)
    saved = engine._CHUNK_BYTES, engine._MIN_CHUNK_DAYS
    try:
        if chunk is not None:
            engine._CHUNK_BYTES, engine._MIN_CHUNK_DAYS = 0, chunk
        res = run_backtest(open_, close, targets, rebalance, cfg, cash_return=cash_return, adv=adv)
    finally:
        engine._CHUNK_BYTES, engine._MIN_CHUNK_DAYS = saved
    assert_matches(res, reference(open_, close, targets, rebalance, cfg, cash_return, adv))


def test_chunking_does_not_change_results(monkeypatch):
    rng = np.random.default_rng(7)
    T, N = 60, 9
    open_, close = make_prices(rng, T, N)
    targets = make_targets(rng, T, N)
    cfg = ExecutionConfig(price="open", lag=1, fee_bps=2.0)
    base = run_backtest(open_, close, targets, every(T, 2), cfg)
    for days in (1, 2, 5, 7):
        monkeypatch.setattr(engine, "_CHUNK_BYTES", 0)
        monkeypatch.setattr(engine, "_MIN_CHUNK_DAYS", days)
        res = run_backtest(open_, close, targets, every(T, 2), cfg)
        for f in fields(BacktestResult):
            np.testing.assert_allclose(getattr(res, f.name), getattr(base, f.name), rtol=0, atol=1e-13)


@pytest.mark.parametrize("price", ["open", "close"])
@pytest.mark.parametrize("lag", [1, 2])
@pytest.mark.parametrize("k", [1, 3])
def test_matches_reference_with_cash_and_cap(chunking, price, lag, k):
    rng = np.random.default_rng(2000 * lag + 20 * k + (price == "open"))
    T, N = 40, 6
    open_, close = make_prices(rng, T, N)
    targets = make_targets(rng, T, N)
    rebalance = every(T, k, phase=1 % k)
    cash_return = rng.normal(2e-4, 5e-3, size=T)
    adv = make_adv(rng, T, N)
    cfg = ExecutionConfig(price=price, lag=lag, fee_bps=5.0, slippage_bps=7.5, participation_cap=0.05)
    res = run_backtest(open_, close, targets, rebalance, cfg, cash_return=cash_return, adv=adv)
    ref = reference(open_, close, targets, rebalance, cfg, cash_return, adv)
    assert_matches(res, ref)
    assert 0 < res.trade_capped.sum() < res.trade_capped.size  # the cap binds sometimes
    assert res.capped_trades.sum() > res.trade_capped.sum()  # some orders are blocked (NaN ADV)
    assert np.any(res.short_ret != 0) and np.any(res.cash_ret != 0)
    assert np.array_equal(res.long_ret + res.short_ret + res.cash_ret, res.gross)
    # Cash return only: the uncapped engine also matches.
    cfg = ExecutionConfig(price=price, lag=lag, fee_bps=5.0)
    res = run_backtest(open_, close, targets, rebalance, cfg, cash_return=cash_return)
    assert_matches(res, reference(open_, close, targets, rebalance, cfg, cash_return))


def test_features_off_are_bit_identical():
    """Zero cash return / ADV without a cap take the plain path; a cap that never binds changes nothing."""
    rng = np.random.default_rng(31)
    T, N = 50, 7
    open_, close = make_prices(rng, T, N)
    targets = make_targets(rng, T, N)
    cfg = ExecutionConfig(price="open", lag=1, fee_bps=4.0)
    base = run_backtest(open_, close, targets, every(T, 2), cfg)
    assert np.all(base.cash_ret == 0.0) and base.cash_ret.shape == (T,)
    assert base.capped_trades.dtype == np.int64 and np.all(base.capped_trades == 0)
    assert base.trade_capped.dtype == np.bool_ and base.trade_capped.shape == base.trade_day.shape
    assert not base.trade_capped.any()
    assert np.array_equal(base.gross, base.long_ret + base.short_ret)
    variants = [
        run_backtest(open_, close, targets, every(T, 2), cfg, cash_return=np.zeros(T)),
        run_backtest(open_, close, targets, every(T, 2), cfg, cash_return=None, adv=make_adv(rng, T, N)),
    ]
    for res in variants:
        for f in fields(BacktestResult):
            a, b = getattr(base, f.name), getattr(res, f.name)
            assert a.dtype == b.dtype and np.array_equal(a, b), f.name
    loose = ExecutionConfig(price="open", lag=1, fee_bps=4.0, participation_cap=1.0)
    res = run_backtest(open_, close, targets, every(T, 2), loose, adv=np.full((T, N), np.inf))
    for f in fields(BacktestResult):
        np.testing.assert_allclose(getattr(res, f.name), getattr(base, f.name), rtol=0, atol=1e-13)


# --------------------------------------------------------------------------------------------------
# Invariants
# --------------------------------------------------------------------------------------------------
def test_invariants():
    rng = np.random.default_rng(3)
    T, N = 50, 8
    open_, close = make_prices(rng, T, N)
    targets = make_targets(rng, T, N)
    cfg = ExecutionConfig(price="open", lag=1, fee_bps=4.0, slippage_bps=1.0)
    inputs = [a.copy() for a in (open_, close, targets)]
    res = run_backtest(open_, close, targets, every(T, 2), cfg)
    for before, after in zip(inputs, (open_, close, targets), strict=True):
        np.testing.assert_array_equal(before, after)  # inputs are not modified
    assert all(getattr(res, k).shape == (T,) for k in DAILY)
    assert res.weights.shape == (T, N)
    np.testing.assert_allclose(res.long_ret + res.short_ret, res.gross, rtol=0, atol=1e-12)
    np.testing.assert_allclose(res.cost, res.gross - res.net, rtol=0, atol=1e-15)
    np.testing.assert_allclose(np.abs(res.weights).sum(axis=1), res.gross_exposure, atol=1e-12)
    np.testing.assert_allclose(res.weights.sum(axis=1), res.net_exposure, atol=1e-12)
    per_day = np.bincount(res.trade_day, weights=res.trade_cost, minlength=T)
    np.testing.assert_allclose(per_day, res.turnover * 5e-4, atol=1e-15)
    np.testing.assert_allclose(res.cost, (1 + res.gross) * res.turnover * 5e-4, atol=1e-15)
    assert res.trade_day.dtype == np.int64 and res.trade_symbol.dtype == np.int64
    assert np.all(np.diff(res.trade_day) >= 0)


def test_long_only_has_exactly_zero_short_leg():
    rng = np.random.default_rng(4)
    T, N = 40, 5
    open_, close = make_prices(rng, T, N)
    res = run_backtest(open_, close, make_targets(rng, T, N, long_only=True), every(T, 1), ExecutionConfig())
    assert np.all(res.short_ret == 0.0)
    assert np.all(res.long_ret == res.gross)
    assert np.any(res.gross != 0.0)


def test_no_executions_is_all_cash():
    rng = np.random.default_rng(5)
    T, N = 10, 3
    open_, close = make_prices(rng, T, N)
    targets = make_targets(rng, T, N)
    for rebalance in (np.zeros(T, dtype=bool), every(T, 100, phase=T - 1)):  # never / beyond T
        res = run_backtest(open_, close, targets, rebalance, ExecutionConfig(fee_bps=10.0))
        for k in DAILY:
            assert np.all(getattr(res, k) == 0.0), k
        assert np.all(res.weights == 0.0)
        assert all(getattr(res, k).size == 0 for k in TRADES)


def test_zero_target_on_unlisted_symbol_and_stale_close():
    """No price at the execution point: the target is set to 0; a held symbol is closed at its last price."""
    open_ = np.array([[10.0, 10.0], [10.0, np.nan], [10.0, np.nan], [10.0, 12.0]])
    close = np.array([[10.0, 10.0], [10.0, 11.0], [10.0, np.nan], [10.0, 12.0]])
    targets = np.array([[0.0, 0.5], [0.0, 0.5], [0.0, 0.5], [0.0, 0.5]])
    res = run_backtest(open_, close, targets, np.array([True, True, False, False]), ExecutionConfig())
    # day 1 open: symbol 1 has no bar -> target 0, nothing held yet -> no trade;
    # day 2 open: no bar -> target 0; it was never bought, so still nothing.
    assert res.trade_day.size == 0
    res = run_backtest(open_, close, targets, np.array([True, False, False, False]), ExecutionConfig(lag=1))
    assert res.trade_day.size == 0
    # Bought at day 1's close, then no price at day 2's close: closed at the carried 11.0.
    res = run_backtest(
        open_, close, targets, np.array([True, True, False, False]), ExecutionConfig(price="close")
    )
    np.testing.assert_array_equal(res.trade_day, [1, 2])
    np.testing.assert_allclose(res.trade_dw, [0.5, -0.5])
    np.testing.assert_allclose(res.trade_price, [11.0, 11.0])
    np.testing.assert_allclose(res.gross, [0.0, 0.0, 0.0, 0.0])


# --------------------------------------------------------------------------------------------------
# Look-ahead
# --------------------------------------------------------------------------------------------------
def _outputs_until(res: BacktestResult, t: int) -> dict[str, np.ndarray]:
    out = {k: getattr(res, k)[: t + 1] for k in (*DAILY, "weights")}
    keep = res.trade_day <= t
    out.update({k: getattr(res, k)[keep] for k in TRADES})
    return out


@pytest.mark.parametrize("price", ["open", "close"])
@pytest.mark.parametrize("lag", [1, 2])
def test_future_data_does_not_leak(price, lag):
    rng = np.random.default_rng(11)
    T, N = 30, 6
    open_, close = make_prices(rng, T, N)
    targets = make_targets(rng, T, N)
    rebalance = every(T, 1)
    cfg = ExecutionConfig(price=price, lag=lag, fee_bps=3.0)
    base = run_backtest(open_, close, targets, rebalance, cfg)
    for t in (4, 12, 20):
        o2, c2, tg2, rb2 = open_.copy(), close.copy(), targets.copy(), rebalance.copy()
        o2[t + 1 :] *= rng.uniform(0.5, 1.5, size=o2[t + 1 :].shape)
        c2[t + 1 :] *= rng.uniform(0.5, 1.5, size=c2[t + 1 :].shape)
        tg2[t - lag + 1 :] = rng.normal(size=tg2[t - lag + 1 :].shape)  # decisions executing after t
        rb2[t - lag + 1 :] = rng.random(T - t + lag - 1) < 0.5
        res = run_backtest(o2, c2, tg2, rb2, cfg)
        a, b = _outputs_until(base, t), _outputs_until(res, t)
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"{k} up to day {t}")
        assert not np.array_equal(base.gross[t + 1 :], res.gross[t + 1 :])


@pytest.mark.parametrize("price", ["open", "close"])
@pytest.mark.parametrize("lag", [1, 2])
def test_decision_boundary(price, lag):
    """A decision at day t first shows at day t + lag (open: in that day's return; close: in its trades)."""
    rng = np.random.default_rng(12)
    T, N = 20, 4
    open_, close = make_prices(rng, T, N, gaps=False)
    targets = make_targets(rng, T, N)
    np.nan_to_num(targets, copy=False)
    cfg = ExecutionConfig(price=price, lag=lag, fee_bps=3.0)
    base = run_backtest(open_, close, targets, every(T, 1), cfg)
    t = 8
    tg2 = targets.copy()
    tg2[t] = -tg2[t] + 0.1
    res = run_backtest(open_, close, tg2, every(T, 1), cfg)
    e = t + lag
    a, b = _outputs_until(base, e - 1), _outputs_until(res, e - 1)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert base.turnover[e] != res.turnover[e]
    assert base.net[e] != res.net[e]
    if price == "open":
        assert base.gross[e] != res.gross[e]
    else:
        assert base.gross[e] == res.gross[e]  # executed at the close: no return impact that day
        assert not np.array_equal(base.weights[e], res.weights[e])


def test_prices_of_day_t_do_matter():
    """Sanity check of the leak test: changing day t's close changes day t."""
    rng = np.random.default_rng(13)
    T, N = 15, 3
    open_, close = make_prices(rng, T, N, gaps=False)
    targets = make_targets(rng, T, N)
    cfg = ExecutionConfig()
    base = run_backtest(open_, close, targets, every(T, 1), cfg)
    c2 = close.copy()
    c2[7] *= 1.1
    res = run_backtest(open_, c2, targets, every(T, 1), cfg)
    assert base.gross[7] != res.gross[7]


def test_shifting_signal_earlier_changes_results():
    rng = np.random.default_rng(14)
    T, N = 30, 5
    open_, close = make_prices(rng, T, N, gaps=False)
    targets = make_targets(rng, T, N)
    earlier = np.vstack([targets[1:], np.zeros((1, N))])
    for price in ("open", "close"):
        cfg = ExecutionConfig(price=price)
        a = run_backtest(open_, close, targets, every(T, 1), cfg)
        b = run_backtest(open_, close, earlier, every(T, 1), cfg)
        assert not np.allclose(a.gross, b.gross)
        assert not np.allclose(a.weights, b.weights)


@pytest.mark.parametrize("price", ["open", "close"])
def test_never_executes_on_decision_bar(price):
    rng = np.random.default_rng(15)
    T, N, t = 12, 3, 5
    open_, close = make_prices(rng, T, N, gaps=False)
    targets = np.zeros((T, N))
    targets[t:] = [0.6, -0.3, 0.2]
    res = run_backtest(open_, close, targets, every(T, 1), ExecutionConfig(price=price, lag=1, fee_bps=10.0))
    assert res.trade_day.min() == t + 1
    for k in DAILY:
        assert np.all(getattr(res, k)[: t + 1] == 0.0), k
    assert np.all(res.weights[: t + 1] == 0.0)
    assert res.turnover[t + 1] == pytest.approx(1.1)
    if price == "open":
        assert res.gross[t + 1] != 0.0
    else:
        assert res.gross[t + 1] == 0.0
        np.testing.assert_allclose(res.weights[t + 1], [0.6, -0.3, 0.2])


# --------------------------------------------------------------------------------------------------
# Hand-computed cases: 2 symbols, 3 days
# --------------------------------------------------------------------------------------------------
OPEN = np.array([[10.0, 20.0], [11.0, 20.0], [12.0, 18.0]])
CLOSE = np.array([[10.0, 20.0], [12.0, 22.0], [12.0, 20.0]])


def test_hand_open_execution():
    targets = np.array([[0.5, -0.5], [0.5, 0.5], [np.nan, np.nan]])
    cfg = ExecutionConfig(price="open", lag=1, fee_bps=10.0)
    res = run_backtest(OPEN, CLOSE, targets, np.array([True, True, False]), cfg)
    # Day 1: buy at the open (11, 20), turnover 1; intraday A = 1 + .5(12/11 - 1) - .5(22/20 - 1) = 219/220.
    # Day 2: overnight to (12, 18): A = 1 + 1/22 + 1/20 = 241/220, step 241/219; drifted weights there are
    #   (120/241, -99/241) -> turnover |.5 - 120/241| + |.5 + 99/241| = 220/241; then long both at
    #   (12, 18) -> close (12, 20): 19/18.
    c1, c2 = 1e-3, 1e-3 * 220 / 241
    gross = [0.0, -1 / 220, 241 / 219 * 19 / 18 - 1]
    net = [0.0, (1 - 1 / 220) * (1 - c1) - 1, 241 / 219 * 19 / 18 * (1 - c2) - 1]
    np.testing.assert_allclose(res.gross, gross, rtol=0, atol=1e-15)
    np.testing.assert_allclose(res.net, net, rtol=0, atol=1e-15)
    np.testing.assert_allclose(res.cost, np.subtract(gross, net), rtol=0, atol=1e-15)
    np.testing.assert_allclose(res.turnover, [0.0, 1.0, 220 / 241], rtol=0, atol=1e-15)
    # Legs. Day 1: long .5 * 1/11, short -.5 * 2/20. Day 2 overnight: short -.5 (18-22)/20 / (219/220)
    # = 22/219; intraday .5 * 0 + .5 (20-18)/18, both long now: long leg (241/219) * (1/18).
    np.testing.assert_allclose(res.long_ret, [0.0, 1 / 22, 241 / 219 / 18], rtol=0, atol=1e-15)
    np.testing.assert_allclose(res.short_ret, [0.0, -1 / 20, 22 / 219], rtol=0, atol=1e-15)
    w1 = np.array([0.5 * 12 / 11, -0.5 * 22 / 20]) * 220 / 219
    w2 = np.array([0.5, 0.5 * 20 / 18]) * 18 / 19
    np.testing.assert_allclose(res.weights, [[0.0, 0.0], w1, w2], rtol=0, atol=1e-15)
    np.testing.assert_allclose(res.gross_exposure, [0.0, np.abs(w1).sum(), np.abs(w2).sum()], atol=1e-15)
    np.testing.assert_allclose(res.net_exposure, [0.0, w1.sum(), w2.sum()], atol=1e-15)
    np.testing.assert_array_equal(res.trade_day, [1, 1, 2, 2])
    np.testing.assert_array_equal(res.trade_symbol, [0, 1, 0, 1])
    np.testing.assert_allclose(res.trade_dw, [0.5, -0.5, 0.5 - 120 / 241, 0.5 + 99 / 241], atol=1e-15)
    np.testing.assert_allclose(res.trade_price, [11.0, 20.0, 12.0, 18.0])
    np.testing.assert_allclose(res.trade_cost, np.abs(res.trade_dw) * 1e-3, atol=1e-18)


def test_hand_close_execution():
    targets = np.array([[0.5, -0.5], [np.nan, np.nan], [np.nan, np.nan]])
    cfg = ExecutionConfig(price="close", lag=1, fee_bps=6.0, slippage_bps=4.0)
    res = run_backtest(OPEN, CLOSE, targets, np.array([True, False, False]), cfg)
    # Day 1: trade at the close (12, 22): no return that day, cost 1e-3 of value.
    # Day 2: close (12, 20): A = 1 + 0 - .5 (20/22 - 1) = 23/22.
    np.testing.assert_allclose(res.gross, [0.0, 0.0, 1 / 22], rtol=0, atol=1e-15)
    np.testing.assert_allclose(res.net, [0.0, -1e-3, 1 / 22], rtol=0, atol=1e-15)
    np.testing.assert_allclose(res.cost, [0.0, 1e-3, 0.0], rtol=0, atol=1e-15)
    np.testing.assert_allclose(res.long_ret, [0.0, 0.0, 0.0], atol=1e-15)
    np.testing.assert_allclose(res.short_ret, [0.0, 0.0, 1 / 22], atol=1e-15)
    np.testing.assert_allclose(res.weights[1], [0.5, -0.5])
    np.testing.assert_allclose(res.weights[2], np.array([0.5, -0.5 * 20 / 22]) * 22 / 23, atol=1e-15)
    np.testing.assert_allclose(res.gross_exposure, [0.0, 1.0, (0.5 + 0.5 * 20 / 22) * 22 / 23], atol=1e-15)
    np.testing.assert_allclose(res.net_exposure, [0.0, 0.0, (0.5 - 0.5 * 20 / 22) * 22 / 23], atol=1e-15)
    np.testing.assert_array_equal(res.trade_day, [1, 1])
    np.testing.assert_allclose(res.trade_price, [12.0, 22.0])
    np.testing.assert_allclose(res.trade_cost, [5e-4, 5e-4], atol=1e-18)


def test_hand_lag_two_and_cash_weight():
    """Lag 2, open: decided at close 0, executed at open 2; 40% in cash earns nothing."""
    targets = np.array([[0.6, 0.0], [np.nan, np.nan], [np.nan, np.nan]])
    res = run_backtest(OPEN, CLOSE, targets, np.array([True, True, False]), ExecutionConfig(lag=2))
    np.testing.assert_allclose(res.gross, [0.0, 0.0, 0.0], atol=1e-15)  # symbol 0 flat on day 2
    np.testing.assert_array_equal(res.trade_day, [2])
    np.testing.assert_allclose(res.net_exposure, [0.0, 0.0, 0.6])
    targets = np.array([[0.0, 0.6], [np.nan, np.nan], [np.nan, np.nan]])
    res = run_backtest(OPEN, CLOSE, targets, np.array([True, False, False]), ExecutionConfig(lag=2))
    np.testing.assert_allclose(res.gross, [0.0, 0.0, 0.6 * (20 / 18 - 1)], atol=1e-15)


def test_hand_participation_cap():
    """Cap 10% of ADV: one order cut in half and flagged, then an order blocked by an unknown ADV."""
    open_ = np.array([[10.0, 20.0], [10.0, 20.0], [10.0, 22.0]])
    close = np.array([[10.0, 20.0], [10.0, 22.0], [10.0, 22.0]])
    targets = np.array([[0.5, 0.4], [0.5, 0.4], [0.0, 0.0]])
    adv = np.array([[10.0, 2.0], [10.0, np.nan], [np.nan, np.nan]])  # rows of the DECISION days
    cfg = ExecutionConfig(price="open", lag=1, fee_bps=10.0, participation_cap=0.1)
    res = run_backtest(open_, close, targets, np.array([True, True, False]), cfg, adv=adv)
    # Day 1 open, V = 1: limits (1.0, 0.2) -> buy 0.5 and 0.2 of the wanted 0.4 (capped); turnover 0.7.
    # Intraday: A = 1 + 0.2 (22/20 - 1) = 1.02. Day 2 open: drifted (0.5, 0.22) / 1.02; symbol 0 moves to
    # 0.5 (limit 1 / V, not binding), symbol 1 has no ADV on decision day 1: no trade, weight kept.
    dw0 = 0.5 - 0.5 / 1.02
    np.testing.assert_array_equal(res.trade_day, [1, 1, 2])
    np.testing.assert_array_equal(res.trade_symbol, [0, 1, 0])
    np.testing.assert_array_equal(res.trade_capped, [False, True, False])
    np.testing.assert_array_equal(res.capped_trades, [0, 1, 1])  # day 2: blocked order, no trade row
    np.testing.assert_allclose(res.trade_dw, [0.5, 0.2, dw0], rtol=0, atol=1e-15)
    np.testing.assert_allclose(res.turnover, [0.0, 0.7, dw0], rtol=0, atol=1e-15)
    np.testing.assert_allclose(res.gross, [0.0, 0.02, 0.0], rtol=0, atol=1e-15)
    np.testing.assert_allclose(res.net, [0.0, 1.02 * (1 - 7e-4) - 1, -dw0 * 1e-3], rtol=0, atol=1e-15)
    np.testing.assert_allclose(
        res.weights, [[0, 0], [0.5 / 1.02, 0.22 / 1.02], [0.5, 0.22 / 1.02]], atol=1e-15
    )
    # The limit is in capital units: after the book has doubled (100% cash return on day 0) it is half
    # as large in weight, and with no cap the same decisions reach their targets.
    res = run_backtest(
        open_, close, targets, np.array([True, False, False]), cfg, adv=adv, cash_return=[1, 0, 0]
    )
    np.testing.assert_allclose(res.trade_dw, [0.5, 0.1], rtol=0, atol=1e-15)
    np.testing.assert_array_equal(res.trade_capped, [False, True])
    res = run_backtest(open_, close, targets, np.array([True, False, False]), ExecutionConfig(fee_bps=10.0))
    np.testing.assert_allclose(res.trade_dw, [0.5, 0.4], rtol=0, atol=1e-15)


def test_hand_cash_return():
    r = np.array([0.01, 0.02, 0.03])
    # A flat book earns exactly the cash return, day 0 included.
    res = run_backtest(
        OPEN, CLOSE, np.zeros((3, 2)), np.ones(3, bool), ExecutionConfig(fee_bps=10.0), cash_return=r
    )
    for k in ("gross", "net", "cash_ret"):
        np.testing.assert_array_equal(getattr(res, k), r, err_msg=k)
    assert np.all(res.long_ret == 0.0) and np.all(res.short_ret == 0.0) and res.trade_day.size == 0
    # Fully invested from the open of day 1: cash until then, none after.
    targets = np.array([[0.6, 0.4], [np.nan, np.nan], [np.nan, np.nan]])
    res = run_backtest(OPEN, CLOSE, targets, np.array([True, False, False]), ExecutionConfig(), cash_return=r)
    base = run_backtest(OPEN, CLOSE, targets, np.array([True, False, False]), ExecutionConfig())
    np.testing.assert_allclose(res.cash_ret, [0.01, 0.0, 0.0], rtol=0, atol=1e-15)
    np.testing.assert_allclose(res.gross, base.gross + [0.01, 0.0, 0.0], rtol=0, atol=1e-15)
    np.testing.assert_allclose(res.long_ret, base.long_ret, rtol=0, atol=1e-15)
    # Dollar-neutral at the close of day 1 (as in test_hand_close_execution): the day's cash return accrues
    # before the trade; afterwards cash = 1 - 0 (short proceeds included) earns r on top of the short leg.
    targets = np.array([[0.5, -0.5], [np.nan, np.nan], [np.nan, np.nan]])
    cfg = ExecutionConfig(price="close", lag=1, fee_bps=6.0, slippage_bps=4.0)
    res = run_backtest(OPEN, CLOSE, targets, np.array([True, False, False]), cfg, cash_return=r)
    np.testing.assert_allclose(res.cash_ret, r, rtol=0, atol=1e-15)
    np.testing.assert_allclose(res.gross, [0.01, 0.02, 1 / 22 + 0.03], rtol=0, atol=1e-15)
    np.testing.assert_allclose(res.cost, [0.0, 1.02e-3, 0.0], rtol=0, atol=1e-15)
    np.testing.assert_allclose(res.short_ret, [0.0, 0.0, 1 / 22], rtol=0, atol=1e-15)
    np.testing.assert_allclose(
        res.weights[2], np.array([0.5, -0.5 * 20 / 22]) / (1 + 1 / 22 + 0.03), atol=1e-15
    )
    # Levered 150% long from the open of day 1: cash -0.5 pays the rate.
    targets = np.array([[1.5, 0.0], [np.nan, np.nan], [np.nan, np.nan]])
    res = run_backtest(OPEN, CLOSE, targets, np.array([True, False, False]), ExecutionConfig(), cash_return=r)
    a1 = 1 + 1.5 * (12 / 11 - 1) - 0.5 * 0.02
    np.testing.assert_allclose(res.cash_ret, [0.01, -0.01, -0.5 * 1.02 * 0.03 / a1], rtol=0, atol=1e-15)


@pytest.mark.parametrize("price", ["open", "close"])
@pytest.mark.parametrize("lag", [1, 2])
def test_future_adv_and_cash_return_do_not_leak(price, lag):
    """ADV is read on the decision day and the cash return on its own day: later rows cannot matter."""
    rng = np.random.default_rng(41)
    T, N = 30, 5
    open_, close = make_prices(rng, T, N)
    targets = make_targets(rng, T, N)
    adv, cash_return = make_adv(rng, T, N), rng.normal(0.0, 0.01, size=T)
    cfg = ExecutionConfig(price=price, lag=lag, fee_bps=3.0, participation_cap=0.05)
    base = run_backtest(open_, close, targets, every(T, 1), cfg, cash_return=cash_return, adv=adv)
    assert base.trade_capped.any()
    for t in (5, 15):
        adv2, cr2 = adv.copy(), cash_return.copy()
        adv2[t - lag + 1 :] = rng.uniform(
            0.0, 0.01, size=adv2[t - lag + 1 :].shape
        )  # decisions after t - lag
        cr2[t + 1 :] = rng.normal(0.0, 0.01, size=T - t - 1)
        res = run_backtest(open_, close, targets, every(T, 1), cfg, cash_return=cr2, adv=adv2)
        a, b = _outputs_until(base, t), _outputs_until(res, t)
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"{k} up to day {t}")
        assert not np.array_equal(base.net[t + 1 :], res.net[t + 1 :])


# --------------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------------
def test_bad_config():
    with pytest.raises(ValueError, match="lag"):
        ExecutionConfig(lag=0)
    with pytest.raises(ValueError, match="lag"):
        ExecutionConfig(lag=-1)
    with pytest.raises(ValueError, match="lag"):
        ExecutionConfig(lag=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fee_bps"):
        ExecutionConfig(fee_bps=-1.0)
    with pytest.raises(ValueError, match="slippage_bps"):
        ExecutionConfig(slippage_bps=-0.1)
    with pytest.raises(ValueError, match="slippage_bps"):
        ExecutionConfig(slippage_bps=float("nan"))
    with pytest.raises(ValueError, match="price"):
        ExecutionConfig(price="vwap")  # type: ignore[arg-type]
    for bad in (0.0, -0.1, float("nan"), float("inf"), True, "0.1"):
        with pytest.raises(ValueError, match="participation_cap"):
            ExecutionConfig(participation_cap=bad)  # type: ignore[arg-type]
    assert ExecutionConfig(participation_cap=1).participation_cap == 1


def test_bad_cash_return_and_adv():
    T, N = 5, 2
    o = np.full((T, N), 10.0)
    tg = np.full((T, N), 0.5)
    rb = np.ones(T, dtype=bool)
    cfg = ExecutionConfig()
    with pytest.raises(ValueError, match="cash_return shape"):
        run_backtest(o, o, tg, rb, cfg, cash_return=np.zeros(T + 1))
    for bad in (np.nan, np.inf, -1.0, -2.0):
        cr = np.zeros(T)
        cr[2] = bad
        with pytest.raises(ValueError, match="cash_return"):
            run_backtest(o, o, tg, rb, cfg, cash_return=cr)
    capped = ExecutionConfig(participation_cap=0.1)
    with pytest.raises(ValueError, match="adv is required"):
        run_backtest(o, o, tg, rb, capped)
    with pytest.raises(ValueError, match="adv shape"):
        run_backtest(o, o, tg, rb, capped, adv=np.ones((T, N + 1)))
    with pytest.raises(ValueError, match="adv shape"):
        run_backtest(o, o, tg, rb, cfg, adv=np.ones(T))  # checked even without a cap
    with pytest.raises(ValueError, match="adv must be >= 0"):
        run_backtest(o, o, tg, rb, capped, adv=np.full((T, N), -1.0))
    # NaN ADV everywhere: nothing can be traded; 0 ADV likewise; +inf: no limit.
    res = run_backtest(o, o, tg, rb, capped, adv=np.full((T, N), np.nan))
    assert res.trade_day.size == 0 and np.all(res.weights == 0.0)
    np.testing.assert_array_equal(res.capped_trades, [0, 2, 2, 2, 2])  # both orders, every day
    res = run_backtest(o, o, tg, rb, capped, adv=np.zeros((T, N)))
    assert res.trade_day.size == 0 and res.capped_trades.sum() == 8
    res = run_backtest(o, o, tg, rb, capped, adv=np.full((T, N), np.inf))
    np.testing.assert_allclose(res.weights[1:], 0.5)
    assert not res.trade_capped.any()


def test_bad_shapes_and_values():
    T, N = 5, 2
    o = np.full((T, N), 10.0)
    tg = np.zeros((T, N))
    rb = np.ones(T, dtype=bool)
    cfg = ExecutionConfig()
    with pytest.raises(ValueError, match="close shape"):
        run_backtest(o, np.full((T, N + 1), 10.0), tg, rb, cfg)
    with pytest.raises(ValueError, match="targets shape"):
        run_backtest(o, o, np.zeros((T - 1, N)), rb, cfg)
    with pytest.raises(ValueError, match="rebalance shape"):
        run_backtest(o, o, tg, np.ones(T + 1, dtype=bool), cfg)
    with pytest.raises(ValueError, match="2-D"):
        run_backtest(o[:, 0], o[:, 0], tg[:, 0], rb, cfg)
    with pytest.raises(ValueError, match="rebalance must be boolean"):
        run_backtest(o, o, tg, np.full(T, 0.5), cfg)
    bad = o.copy()
    bad[3, 1] = 0.0
    with pytest.raises(ValueError, match="prices"):
        run_backtest(o, bad, tg, rb, cfg)
    bad[3, 1] = np.inf
    with pytest.raises(ValueError, match="prices"):
        run_backtest(bad, o, tg, rb, cfg)
    bad_tg = tg.copy()
    bad_tg[1, 0] = np.inf
    with pytest.raises(ValueError, match="targets"):
        run_backtest(o, o, bad_tg, rb, cfg)


def test_integer_rebalance_and_empty_shapes():
    rng = np.random.default_rng(21)
    open_, close = make_prices(rng, 8, 3, gaps=False)
    targets = make_targets(rng, 8, 3)
    a = run_backtest(open_, close, targets, every(8, 2).astype(int), ExecutionConfig())
    b = run_backtest(open_, close, targets, every(8, 2), ExecutionConfig())
    np.testing.assert_array_equal(a.net, b.net)
    res = run_backtest(
        np.zeros((0, 3)), np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0, bool), ExecutionConfig()
    )
    assert res.gross.shape == (0,) and res.weights.shape == (0, 3)
    res = run_backtest(
        np.zeros((4, 0)), np.zeros((4, 0)), np.zeros((4, 0)), np.ones(4, bool), ExecutionConfig()
    )
    assert np.all(res.gross == 0.0) and res.weights.shape == (4, 0) and res.trade_day.size == 0
