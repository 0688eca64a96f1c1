"""Tests of quantlab.metrics: empyrical parity, hand-computed values, PSR/DSR/MinTRL, as-of KPIs."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quantlab import metrics as m

SQRT252 = math.sqrt(252)


def _close(a: float, b: float, tol: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= tol * max(1.0, abs(a), abs(b))


def _phi(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def _series(seed: int, n: int = 600, mu: float = 4e-4, sigma: float = 0.012) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_t(5, n) * sigma / math.sqrt(5 / 3) + mu


# ------------------------------------------------------------------------------------ empyrical parity
@pytest.mark.parametrize("seed", range(6))
def test_matches_empyrical(seed: int) -> None:
    ep = pytest.importorskip("empyrical")
    r = _series(seed, n=50 + 150 * seed)
    pairs = [
        (m.sharpe_ratio(r), ep.sharpe_ratio(r)),
        (m.sharpe_ratio(r, risk_free=1e-4), ep.sharpe_ratio(r, risk_free=1e-4)),
        (m.sortino_ratio(r), ep.sortino_ratio(r)),
        (m.sortino_ratio(r, required_return=5e-4), ep.sortino_ratio(r, required_return=5e-4)),
        (m.annual_return(r), ep.annual_return(r)),
        (m.annual_volatility(r), ep.annual_volatility(r)),
        (m.max_drawdown(r), -ep.max_drawdown(r)),
        (m.calmar_ratio(r), ep.calmar_ratio(r)),
        (m.tail_ratio(r), ep.tail_ratio(r)),
        (m.stability(r), ep.stability_of_timeseries(r)),
        (m.value_at_risk(r), ep.value_at_risk(r)),
        (m.value_at_risk(r, cutoff=0.01), ep.value_at_risk(r, cutoff=0.01)),
    ]
    for i, (ours, theirs) in enumerate(pairs):
        assert _close(ours, float(theirs), 1e-9), (i, ours, theirs)


def test_nans_are_dropped() -> None:
    r = _series(7, n=300)
    with_nans = np.concatenate([[np.nan] * 5, r[:100], [np.nan], r[100:]])
    for f in (
        m.sharpe_ratio, m.sortino_ratio, m.annual_return, m.annual_volatility, m.max_drawdown,
        m.calmar_ratio, m.ulcer_index, m.gain_to_pain, m.time_under_water, m.hit_rate, m.tail_ratio,
        m.value_at_risk, m.stability, m.turnover, m.probabilistic_sharpe_ratio, m.min_track_record_length,
    ):  # fmt: skip
        assert f(with_nans) == f(r), f.__name__


@pytest.mark.parametrize(
    "f",
    [m.sharpe_ratio, m.sortino_ratio, m.annual_return, m.annual_volatility, m.max_drawdown, m.calmar_ratio,
     m.ulcer_index, m.gain_to_pain, m.time_under_water, m.hit_rate, m.tail_ratio, m.value_at_risk,
     m.stability, m.turnover, m.probabilistic_sharpe_ratio],
)  # fmt: skip
def test_too_few_observations_is_nan(f) -> None:
    assert math.isnan(f(np.array([])))
    assert math.isnan(f(np.array([0.01])))
    assert math.isnan(f(np.array([np.nan, 0.01, np.nan])))
    assert not math.isnan(f(np.array([0.01, -0.02, 0.03, -0.01, 0.02])))


def test_rejects_2d() -> None:
    with pytest.raises(ValueError):
        m.sharpe_ratio(np.zeros((3, 2)))


# ---------------------------------------------------------------------------------- hand-computed values
R5 = [0.10, -0.05, 0.02, -0.10, 0.05]


def test_hand_computed_values() -> None:
    r = np.array(R5)
    mean, sd = statistics.fmean(R5), statistics.stdev(R5)
    assert _close(m.sharpe_ratio(r), mean / sd * SQRT252, 1e-12)
    rf = 0.001
    assert _close(m.sharpe_ratio(r, risk_free=rf), (mean - rf) / sd * SQRT252, 1e-12)
    down = math.sqrt((0.05**2 + 0.10**2) / 5)
    assert _close(m.sortino_ratio(r), mean * 252 / (down * SQRT252), 1e-12)
    req = 0.02  # excess 0.08, -0.07, 0.0, -0.12, 0.03: shortfalls -0.07, -0.12 over n = 5
    down_req = math.sqrt((0.07**2 + 0.12**2) / 5)
    assert _close(m.sortino_ratio(r, required_return=req), (mean - req) * SQRT252 / down_req, 1e-12)
    assert _close(m.annual_volatility(r), sd * SQRT252, 1e-12)
    growth = 1.1 * 0.95 * 1.02 * 0.9 * 1.05
    assert _close(m.annual_return(r), growth ** (252 / 5) - 1, 1e-12)
    # equity 1.1, 1.045, 1.0659, 0.95931, 1.0072755; peak 1.1 from day 1 on
    dd = [0.0, 0.05, (1.1 - 1.0659) / 1.1, (1.1 - 0.95931) / 1.1, (1.1 - 1.0072755) / 1.1]
    assert _close(m.max_drawdown(r), (1.1 - 0.95931) / 1.1, 1e-12)
    np.testing.assert_allclose(m.drawdown_series(r), dd, rtol=1e-12, atol=1e-15)
    assert _close(m.ulcer_index(r), math.sqrt(sum(d * d for d in dd) / 5), 1e-12)
    assert _close(m.calmar_ratio(r), (growth ** (252 / 5) - 1) / ((1.1 - 0.95931) / 1.1), 1e-12)
    assert m.time_under_water(r) == 4.0
    assert m.hit_rate(r) == 3 / 5
    assert _close(m.gain_to_pain(r), 0.02 / 0.15, 1e-12)
    assert m.turnover(np.array([0.2, np.nan, 0.4])) == pytest.approx(0.3, abs=1e-15)
    # numpy 'linear' percentiles of the sorted sample [-0.10, -0.05, 0.02, 0.05, 0.10]
    p5, p95 = -0.10 + 0.2 * 0.05, 0.05 + 0.8 * 0.05
    assert _close(m.value_at_risk(r), p5, 1e-12)
    assert _close(m.tail_ratio(r), abs(p95) / abs(p5), 1e-12)
    y = np.cumsum(np.log1p(r))
    assert _close(m.stability(r), float(np.corrcoef(np.arange(5), y)[0, 1] ** 2), 1e-12)


def test_drawdown_starting_capital_is_a_peak() -> None:
    # a loss on the first day is a drawdown from the starting capital 1
    assert m.max_drawdown(np.array([-0.2, 0.1])) == pytest.approx(0.2, abs=1e-15)
    assert m.time_under_water(np.array([-0.2, 0.1])) == 2.0
    assert m.time_under_water(np.array([-0.1, 0.2, -0.01, -0.01, 0.5])) == 2.0
    assert m.time_under_water(np.array([0.01, 0.02])) == 0.0
    assert m.max_drawdown(np.array([0.01, 0.02])) == 0.0
    assert math.isnan(m.calmar_ratio(np.array([0.01, 0.02])))  # no drawdown


def test_degenerate_denominators_are_nan() -> None:
    flat = np.full(30, 0.001)
    assert math.isnan(m.sharpe_ratio(flat))  # empyrical: +inf
    assert math.isnan(m.sortino_ratio(flat))  # no shortfall
    assert math.isnan(m.gain_to_pain(flat))
    assert math.isnan(m.probabilistic_sharpe_ratio(flat))
    assert math.isnan(m.stability(np.zeros(10)))
    assert math.isnan(m.tail_ratio(np.r_[np.zeros(30), 0.01, -0.01]))
    assert m.annual_return(flat) == pytest.approx(1.001**252 - 1, rel=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-0.5, 0.5, allow_nan=False), min_size=2, max_size=80))
def test_drawdown_properties(xs: list[float]) -> None:
    r = np.array(xs)
    mdd, ulcer, tuw = m.max_drawdown(r), m.ulcer_index(r), m.time_under_water(r)
    assert 0.0 <= ulcer <= mdd + 1e-15 <= 1.0 + 1e-15
    assert 0.0 <= tuw <= r.size
    assert (mdd == 0.0) == (tuw == 0.0)
    assert 0.0 <= m.hit_rate(r) <= 1.0


# ------------------------------------------------------------------------------------- PSR / DSR / MinTRL
def test_dsr_paper_example() -> None:
    """Bailey & López de Prado (2014), numerical example: N = 100 trials, V[annualised SR] = 1/2, best
    annualised SR 2.5 over T = 1250 daily obs (5 years of 250 days), skew -3, raw kurtosis 10."""
    ppy = 250
    z = m.expected_max_sharpe(100, 1.0)  # E[max] of 100 standard normals
    assert z == pytest.approx(2.5306, abs=1e-4)
    assert math.sqrt(0.5) * z == pytest.approx(1.7894, abs=1e-4)  # annualised
    sr0 = m.expected_max_sharpe(100, 0.5 / ppy)  # per period
    assert sr0 == pytest.approx(0.1132, abs=1e-4)
    sr = 2.5 / math.sqrt(ppy)
    dsr = m.dsr_from_stats(sr, 1250, -3.0, 10.0, 100, 0.5 / ppy)
    assert dsr == pytest.approx(0.9004, abs=1e-4)
    # hand computation of the same number
    sigma = math.sqrt((1 + 3 * sr + 9 / 4 * sr**2) / 1249)
    assert dsr == pytest.approx(_phi((sr - sr0) / sigma), abs=1e-12)
    assert dsr == pytest.approx(m.psr_from_stats(sr, 1250, -3.0, 10.0, sr0), abs=1e-15)


def test_expected_max_sharpe_upper_tails() -> None:
    g = 0.5772156649015329
    # Z^-1(0.99) = 2.3263478740, Z^-1(1 - 1/(100 e)) = 2.6802104450: both upper-tail quantiles (positive)
    assert m.expected_max_sharpe(100, 1.0) == pytest.approx(
        (1 - g) * 2.3263478740 + g * 2.6802104450, abs=1e-9
    )
    vals = [m.expected_max_sharpe(n, 0.04) for n in (2, 5, 10, 100, 1000)]
    assert vals[0] > 0 and all(b > a for a, b in zip(vals, vals[1:], strict=False))
    assert m.expected_max_sharpe(1, 0.04) == 0.0
    assert m.expected_max_sharpe(10, 0.0) == 0.0
    assert m.expected_max_sharpe(10, 0.25) == pytest.approx(0.5 * m.expected_max_sharpe(10, 1.0))
    vec = m.expected_max_sharpe(np.array([10, 100]), 1.0)
    np.testing.assert_allclose(vec, [m.expected_max_sharpe(10, 1.0), m.expected_max_sharpe(100, 1.0)])
    with pytest.raises(ValueError):
        m.expected_max_sharpe(0, 1.0)


def test_dsr_decreases_with_trials() -> None:
    r = _series(3, n=1000, mu=1e-3)
    dsrs = [m.deflated_sharpe_ratio(r, n, 1e-3) for n in (1, 2, 10, 100, 1000)]
    assert dsrs[0] == pytest.approx(m.probabilistic_sharpe_ratio(r), abs=1e-15)
    assert all(b < a for a, b in zip(dsrs, dsrs[1:], strict=False))
    # more dispersed trials -> higher hurdle -> lower DSR
    assert m.deflated_sharpe_ratio(r, 50, 4e-3) < m.deflated_sharpe_ratio(r, 50, 1e-3)


def test_psr_hand_value_and_symmetries() -> None:
    # normal returns: sigma = sqrt((1 + SR^2 / 2) / (n - 1))
    assert m.psr_from_stats(0.1, 253, 0.0, 3.0) == pytest.approx(
        _phi(0.1 * math.sqrt(252) / math.sqrt(1 + 0.005)), abs=1e-12
    )
    assert m.psr_from_stats(0.05, 500, -1.0, 6.0, 0.05) == 0.5
    for sr, n, sk, ku, b in [
        (0.08, 300, -0.7, 7.0, 0.02),
        (-0.03, 90, 0.4, 4.0, 0.01),
        (0.2, 40, 1.5, 9.0, 0.0),
    ]:
        p = m.psr_from_stats(sr, n, sk, ku, b)
        assert p + m.psr_from_stats(-sr, n, -sk, ku, -b) == pytest.approx(1.0, abs=1e-12)
    # more observations -> more confidence on the side of the estimate
    ps = [m.psr_from_stats(0.05, n, -0.5, 5.0) for n in (20, 100, 1000)]
    assert ps[0] < ps[1] < ps[2]
    # negative skew / fat tails lower the PSR of a positive Sharpe
    assert m.psr_from_stats(0.1, 250, -1.0, 3.0) < m.psr_from_stats(0.1, 250, 0.0, 3.0)
    assert m.psr_from_stats(0.1, 250, 0.0, 10.0) < m.psr_from_stats(0.1, 250, 0.0, 3.0)
    assert math.isnan(m.psr_from_stats(0.1, 1, 0.0, 3.0))
    arr = m.psr_from_stats(np.array([0.0, 0.1]), 100, 0.0, 3.0)
    assert arr.shape == (2,) and arr[0] == 0.5


def test_sharpe_stats_and_psr_from_returns() -> None:
    stats = pytest.importorskip("scipy.stats")
    r = _series(11, n=400)
    sr, n, sk, ku = m.sharpe_stats(r)
    assert n == 400
    assert sr == pytest.approx(m.sharpe_ratio(r) / SQRT252, rel=1e-12)
    assert sk == pytest.approx(stats.skew(r), rel=1e-10)
    assert ku == pytest.approx(stats.kurtosis(r, fisher=False), rel=1e-10)
    assert m.probabilistic_sharpe_ratio(r, 0.01) == pytest.approx(
        m.psr_from_stats(sr, n, sk, ku, 0.01), abs=1e-15
    )


def test_min_track_record_length() -> None:
    r = _series(5, n=800, mu=1e-3)
    sr, _, sk, ku = m.sharpe_stats(r)
    trl = m.min_track_record_length(r, benchmark_sr=0.0, alpha=0.05)
    z = 1.6448536269514722
    assert trl == pytest.approx(1 + (1 - sk * sr + (ku - 1) / 4 * sr**2) * (z / sr) ** 2, rel=1e-12)
    # at n = MinTRL the PSR is exactly 1 - alpha
    assert m.psr_from_stats(sr, trl, sk, ku, 0.0) == pytest.approx(0.95, abs=1e-12)
    assert m.min_trl_from_stats(0.1, 0.0, 3.0, 0.0, 0.01) > m.min_trl_from_stats(0.1, 0.0, 3.0, 0.0, 0.05)
    assert m.min_trl_from_stats(0.05, 0.0, 3.0, 0.05) == math.inf
    assert m.min_trl_from_stats(0.01, 0.0, 3.0, 0.05) == math.inf


# ------------------------------------------------------------------------------------------- as-of KPIs
ONE_D = {
    "sharpe": m.sharpe_ratio,
    "sortino": m.sortino_ratio,
    "annual_return": m.annual_return,
    "annual_volatility": m.annual_volatility,
    "max_dd": m.max_drawdown,
    "calmar": m.calmar_ratio,
    "hit_rate": m.hit_rate,
    "ulcer": m.ulcer_index,
    "psr": m.probabilistic_sharpe_ratio,
}
WINDOWS = {"w2": 2, "w5": 5, "w20": 20, "w60": 60, "full": None}


def _panel(t: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ret = rng.standard_t(4, (t, 7)) * 0.01 + 3e-4
    ret[:, 1] = np.where(rng.random(t) < 0.3, 0.0, ret[:, 1])  # many exact zeros
    ret[:, 2] = 0.0  # flat: sharpe / sortino / calmar / psr NaN
    ret[:, 3] = np.abs(ret[:, 3])  # never loses: sortino / calmar NaN
    ret[:, 5] = np.nan  # never incepted
    for s, inception in [(0, 0), (1, 7), (3, 1), (4, 55), (6, t - 3)]:
        ret[:inception, s] = np.nan
    tov = np.abs(rng.normal(0.1, 0.05, (t, 7)))
    tov[rng.random((t, 7)) < 0.1] = np.nan  # turnover gaps are skipped
    return ret, tov


def _expected(ret: np.ndarray, tov: np.ndarray, t: int, s: int, length: int | None) -> dict[str, float]:
    lo = 0 if length is None else t - length + 1
    window, to_window = ret[max(lo, 0) : t + 1, s], tov[max(lo, 0) : t + 1, s]
    n_valid = int(np.count_nonzero(~np.isnan(window)))
    exp = {"sample_days": float(n_valid)}
    if length is not None and (lo < 0 or n_valid < length):  # fixed window not full yet
        exp |= {k: math.nan for k in [*ONE_D, "turnover"]}
        return exp
    exp |= {k: f(window) for k, f in ONE_D.items()}
    exp["turnover"] = m.turnover(to_window[~np.isnan(window)])
    return exp


def _check(out: dict[str, np.ndarray], ret: np.ndarray, tov: np.ndarray, cells) -> None:
    for t, s in cells:
        for name, length in WINDOWS.items():
            for k, v in _expected(ret, tov, t, s, length).items():
                got = float(out[f"{k}_{name}"][t, s])
                assert _close(got, v, 1e-10), (t, s, name, k, got, v)
        assert _close(float(out["psr"][t, s]), m.probabilistic_sharpe_ratio(ret[: t + 1, s]), 1e-10)


def test_asof_kpis_equal_1d_functions_everywhere_small() -> None:
    ret, tov = _panel(90, seed=1)
    out = m.asof_kpis(ret, tov, WINDOWS)
    assert set(out) == {f"{k}_{w}" for k in m.ASOF_METRICS for w in WINDOWS} | {"psr"}
    assert all(a.shape == ret.shape for a in out.values())
    assert out["sample_days_full"].dtype == np.int64
    _check(out, ret, tov, [(t, s) for t in range(90) for s in range(7)])


def test_asof_kpis_equal_1d_functions_random_cells() -> None:
    ret, tov = _panel(700, seed=2)
    out = m.asof_kpis(ret, tov, WINDOWS)
    rng = np.random.default_rng(3)
    cells = [
        (int(t), int(s)) for t, s in zip(rng.integers(0, 700, 150), rng.integers(0, 7, 150), strict=True)
    ]
    cells += [(699, s) for s in range(7)] + [(59, 0), (60, 0), (113, 4), (114, 4)]
    _check(out, ret, tov, cells)
    # sanity on the degenerate columns
    assert np.isnan(out["sharpe_full"][:, 2]).all() and np.isnan(out["psr"][:, 2]).all()
    assert np.isnan(out["calmar_w20"][:, 3]).all() and np.isnan(out["sortino_full"][:, 3]).all()
    assert (out["sample_days_full"][:, 5] == 0).all() and np.isnan(out["max_dd_full"][:, 5]).all()
    assert (out["max_dd_w20"][19:, 2] == 0).all()


def test_asof_kpis_ranged_run_equals_full_run() -> None:
    ret, tov = _panel(400, seed=4)
    full = m.asof_kpis(ret, tov, WINDOWS)
    for k in (1, 37, 150):
        part = m.asof_kpis(ret[k:], tov[k:], WINDOWS)
        for name, length in WINDOWS.items():
            if length is None:
                continue
            for metric in m.ASOF_METRICS:
                a = full[f"{metric}_{name}"][k + length - 1 :]
                b = part[f"{metric}_{name}"][length - 1 :]
                np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12, err_msg=f"{metric}_{name} k={k}")


def test_asof_kpis_no_lookahead() -> None:
    ret, tov = _panel(300, seed=5)
    full = m.asof_kpis(ret, tov, WINDOWS)
    for t in (0, 10, 59, 200):
        head = m.asof_kpis(ret[: t + 1], tov[: t + 1], WINDOWS)
        for key, arr in head.items():
            np.testing.assert_allclose(arr[t], full[key][t], rtol=1e-12, atol=1e-15, err_msg=key)


def test_asof_kpis_validation_and_edges() -> None:
    ret, tov = _panel(30)
    bad = ret.copy()
    bad[10, 0] = np.nan
    with pytest.raises(ValueError, match="leading NaNs"):
        m.asof_kpis(bad, tov, WINDOWS)
    with pytest.raises(ValueError):
        m.asof_kpis(ret, tov[:, :3], WINDOWS)
    with pytest.raises(ValueError):
        m.asof_kpis(ret, tov, {"bad": 0})
    with pytest.raises(ValueError):
        m.asof_kpis(ret[:, 0], tov[:, 0], WINDOWS)
    # a window longer than the history: all NaN, sample_days still counted
    out = m.asof_kpis(ret, tov, {"long": 100, "one": 1})
    assert np.isnan(out["sharpe_long"]).all() and np.isnan(out["max_dd_one"]).all()
    assert (out["sample_days_long"][:, 0] == np.arange(1, 31)).all()
    assert (out["sample_days_one"][:, 0] == 1).all()
    # only the since-inception psr when no window is given
    only = m.asof_kpis(ret, tov, {})
    assert set(only) == {"psr"}
    np.testing.assert_array_equal(only["psr"], m.asof_kpis(ret, tov, {"full": None})["psr_full"])
    # empty panel
    empty = m.asof_kpis(np.empty((0, 3)), np.empty((0, 3)), WINDOWS)
    assert empty["sharpe_w5"].shape == (0, 3)


def test_asof_kpis_min_periods() -> None:
    ret, tov = _panel(40)
    out = m.asof_kpis(ret, tov, {"full": None}, min_periods=10)
    assert np.isnan(out["sharpe_full"][:9, 0]).all() and not np.isnan(out["sharpe_full"][9, 0])


def test_asof_kpis_dsr() -> None:
    ret, tov = _panel(120, seed=6)
    n_trials = np.array([1, 5, 20, 100, 3, 7, 50])
    var = np.array([1e-3, 2e-3, 5e-4, 1e-3, 1e-3, 1e-3, 4e-3])
    out = m.asof_kpis(ret, tov, WINDOWS, n_trials=n_trials, trials_sr_variance=var)
    base = m.asof_kpis(ret, tov, WINDOWS)
    assert set(out) == set(base) | {f"dsr_{w}" for w in WINDOWS} | {"dsr"}
    for t, s in [(119, 0), (119, 1), (100, 3), (80, 4), (119, 6), (60, 0), (119, 2)]:
        for name, length in WINDOWS.items():
            lo = 0 if length is None else t - length + 1
            window = ret[max(lo, 0) : t + 1, s]
            not_full = length is not None and (lo < 0 or np.isnan(window).any())
            exp = math.nan if not_full else m.deflated_sharpe_ratio(window, n_trials[s], var[s])
            assert _close(float(out[f"dsr_{name}"][t, s]), exp, 1e-10), (t, s, name)
        assert _close(
            float(out["dsr"][t, s]), m.deflated_sharpe_ratio(ret[: t + 1, s], n_trials[s], var[s]), 1e-10
        )
    np.testing.assert_array_equal(out["dsr_full"][:, 0], out["psr_full"][:, 0])  # one trial: DSR == PSR
    ok = ~np.isnan(out["dsr_w60"][:, 3])
    assert ok.any() and (out["dsr_w60"][ok, 3] <= out["psr_w60"][ok, 3]).all()
    scalar = m.asof_kpis(ret, tov, {"w20": 20}, n_trials=10, trials_sr_variance=1e-3)
    assert scalar["dsr_w20"].shape == ret.shape
    with pytest.raises(ValueError):
        m.asof_kpis(ret, tov, WINDOWS, n_trials=10)


def test_asof_window_sums() -> None:
    x = np.array([[np.nan, 1.0], [2.0, 0.0], [3.0, 4.0], [0.0, 1.0]])
    out = m.asof_window_sums(x, {"w2": 2, "full": None})
    np.testing.assert_array_equal(out["w2"], [[np.nan, np.nan], [np.nan, 1.0], [5.0, 4.0], [3.0, 5.0]])
    np.testing.assert_array_equal(out["full"], [[np.nan, 1.0], [2.0, 1.0], [5.0, 5.0], [5.0, 6.0]])
    with pytest.raises(ValueError, match="leading NaNs"):
        m.asof_window_sums(np.array([[1.0], [np.nan]]), {"full": None})
