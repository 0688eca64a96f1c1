"""Performance metrics: the ONE place holding quantlab's metric conventions.

Conventions
-----------
* Inputs are **simple** per-period (daily) returns ``r_t`` (0.01 == +1%), assumed ``> -1``.
* ``PERIODS_PER_YEAR = 252``; annualisation multiplies means by 252 and volatilities by sqrt(252).
* Standard deviations are **sample** standard deviations (``ddof=1``).
* Equity is compounded from a starting capital of 1: ``E_t = prod_{i<=t} (1 + r_i)``, ``E_0 = 1``; the
  starting capital counts as a peak: ``P_t = max(1, max_{i<=t} E_i)`` and the drawdown
  ``DD_t = (P_t - E_t) / P_t`` is a **positive** fraction (empyrical reports ``-DD``).
* Where empyrical (``empyrical-reloaded``) defines a metric we agree with its definition (sharpe,
  sortino, annual_return, annual_volatility, max_drawdown (sign flipped), calmar, tail_ratio, stability,
  value_at_risk).
* PSR / DSR / MinTRL follow Bailey & López de Prado (2012, 2014) with the **per-period (non-annualised)**
  Sharpe ratio and **raw** kurtosis (normal == 3).

NaN policy (applied by every function)
--------------------------------------
1. NaNs in a 1-D input are **dropped**; the remaining values are treated as one contiguous series. In the
   2-D as-of inputs only *leading* NaNs are allowed: they mean "before inception" (interior NaNs raise).
2. Fewer than ``MIN_PERIODS`` (= 2) remaining observations -> NaN.
3. A ratio whose denominator is zero is NaN, never +-inf (constant returns -> sharpe NaN, no losing day ->
   sortino / gain_to_pain NaN, no drawdown -> calmar NaN, zero 5th percentile -> tail_ratio NaN).
   empyrical returns +-inf in some of these degenerate cases; this is the only place we differ from it.
   Deliberate infinity: ``min_track_record_length`` is +inf when SR <= SR* (significance never reached).
4. ``asof_kpis``: a fixed window of L days is NaN until it is *full* (L observations since inception);
   the expanding window (``None``) is NaN until it holds ``min_periods`` observations.
   ``sample_days_*`` is never NaN (it is the count of non-NaN returns in the trailing window).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.special import ndtr, ndtri

__all__ = [
    "ASOF_METRICS",
    "EULER_MASCHERONI",
    "MIN_PERIODS",
    "PERIODS_PER_YEAR",
    "annual_return",
    "annual_volatility",
    "asof_window_sums",
    "asof_kpis",
    "calmar_ratio",
    "deflated_sharpe_ratio",
    "drawdown_series",
    "dsr_from_stats",
    "expected_max_sharpe",
    "gain_to_pain",
    "hit_rate",
    "max_drawdown",
    "min_track_record_length",
    "min_trl_from_stats",
    "probabilistic_sharpe_ratio",
    "psr_from_stats",
    "sharpe_ratio",
    "sharpe_stats",
    "sortino_ratio",
    "stability",
    "tail_ratio",
    "time_under_water",
    "turnover",
    "ulcer_index",
    "value_at_risk",
]

PERIODS_PER_YEAR = 252
MIN_PERIODS = 2
EULER_MASCHERONI = 0.5772156649015329
_SQRT_PPY = math.sqrt(PERIODS_PER_YEAR)
_NAN = float("nan")

#: Metrics produced by ``asof_kpis`` for every window (output key ``f"{metric}_{window}"``).
ASOF_METRICS = (
    "sharpe",
    "sortino",
    "annual_return",
    "annual_volatility",
    "max_dd",
    "calmar",
    "hit_rate",
    "turnover",
    "ulcer",
    "psr",
    "sample_days",
)


# ----------------------------------------------------------------------------------------------- helpers
def _clean(x: Any) -> np.ndarray:
    """1-D float64 copy of ``x`` with NaNs dropped."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"expected a 1-D array, got shape {a.shape}")
    return a[~np.isnan(a)]


def _ratio(num: float, den: float) -> float:
    """num / den, NaN when den == 0 or the result is not finite."""
    if den == 0.0 or not np.isfinite(den):
        return _NAN
    out = num / den
    return float(out) if np.isfinite(out) else _NAN


def _scalar_or_array(a: np.ndarray) -> Any:
    return float(a) if a.ndim == 0 else a


# ------------------------------------------------------------------------------------- 1-D return metrics
def sharpe_ratio(returns: Any, risk_free: float = 0.0) -> float:
    """Annualised Sharpe ratio: ``mean(r - rf) / std(r - rf, ddof=1) * sqrt(252)``.

    ``risk_free`` is per period. Constant excess returns (zero dispersion) -> NaN.
    """
    x = _clean(returns) - risk_free
    if x.size < MIN_PERIODS or np.ptp(x) == 0.0:
        return _NAN
    return _ratio(float(np.mean(x)), float(np.std(x, ddof=1))) * _SQRT_PPY


def sortino_ratio(returns: Any, required_return: float = 0.0) -> float:
    """Annualised Sortino ratio (empyrical's definition).

    ``a = r - required``; ``DD = sqrt(mean(min(a, 0)^2))`` over *all* observations;
    ``sortino = mean(a) * 252 / (DD * sqrt(252)) = sqrt(252) * mean(a) / DD``. No shortfall (DD == 0) -> NaN.
    """
    a = _clean(returns) - required_return
    if a.size < MIN_PERIODS:
        return _NAN
    dd = math.sqrt(float(np.mean(np.square(np.minimum(a, 0.0)))))
    return _ratio(float(np.mean(a)), dd) * _SQRT_PPY


def annual_return(returns: Any) -> float:
    """CAGR over 252-day years: ``prod(1 + r) ** (252 / n) - 1``."""
    r = _clean(returns)
    if r.size < MIN_PERIODS:
        return _NAN
    return float(np.prod(1.0 + r) ** (PERIODS_PER_YEAR / r.size) - 1.0)


def annual_volatility(returns: Any) -> float:
    """Annualised volatility: ``std(r, ddof=1) * sqrt(252)``."""
    r = _clean(returns)
    if r.size < MIN_PERIODS:
        return _NAN
    return float(np.std(r, ddof=1)) * _SQRT_PPY


def drawdown_series(returns: Any) -> np.ndarray:
    """Drawdown after each observation: ``DD_t = (P_t - E_t) / P_t`` with ``P_t = max(1, max_{i<=t} E_i)``.

    Positive fractions; NaNs are dropped (the output is aligned with the non-NaN returns).
    """
    r = _clean(returns)
    equity = np.cumprod(1.0 + r)
    peak = np.maximum.accumulate(np.maximum(equity, 1.0))
    return (peak - equity) / peak


def max_drawdown(returns: Any) -> float:
    """Maximum drawdown of compounded equity, a POSITIVE fraction: ``max_t DD_t`` (== -empyrical)."""
    r = _clean(returns)
    if r.size < MIN_PERIODS:
        return _NAN
    return float(np.max(drawdown_series(r)))


def calmar_ratio(returns: Any) -> float:
    """Calmar ratio: ``annual_return / max_drawdown``; no drawdown -> NaN (as empyrical)."""
    r = _clean(returns)
    if r.size < MIN_PERIODS:
        return _NAN
    return _ratio(annual_return(r), max_drawdown(r))


def ulcer_index(returns: Any) -> float:
    """Ulcer index as a fraction: ``sqrt(mean(DD_t^2))`` over all observations (DD: ``drawdown_series``)."""
    r = _clean(returns)
    if r.size < MIN_PERIODS:
        return _NAN
    return math.sqrt(float(np.mean(np.square(drawdown_series(r)))))


def gain_to_pain(returns: Any) -> float:
    """Gain-to-pain ratio (Schwager) on per-period returns: ``sum(r) / |sum(min(r, 0))|``; no loss -> NaN."""
    r = _clean(returns)
    if r.size < MIN_PERIODS:
        return _NAN
    return _ratio(float(np.sum(r)), -float(np.sum(np.minimum(r, 0.0))))


def time_under_water(returns: Any) -> float:
    """Longest run of consecutive observations with equity strictly below its running peak.

    The starting capital 1 counts as a peak (so a first-day loss starts a run); a run still open at the end
    counts. Returned in periods (trading days) as a float; 0.0 if equity never goes under water.
    """
    r = _clean(returns)
    if r.size < MIN_PERIODS:
        return _NAN
    under = drawdown_series(r) > 0.0
    edges = np.flatnonzero(np.diff(np.concatenate(([False], under, [False])).astype(np.int8)))
    if edges.size == 0:
        return 0.0
    return float(np.max(edges[1::2] - edges[0::2]))


def hit_rate(returns: Any) -> float:
    """Fraction of periods with a strictly positive return: ``count(r > 0) / n`` (zero returns are misses)."""
    r = _clean(returns)
    if r.size < MIN_PERIODS:
        return _NAN
    return float(np.count_nonzero(r > 0.0)) / r.size


def tail_ratio(returns: Any) -> float:
    """Tail ratio: ``|P95(r)| / |P5(r)|`` (numpy linear-interpolated percentiles, as empyrical)."""
    r = _clean(returns)
    if r.size < MIN_PERIODS:
        return _NAN
    hi, lo = np.percentile(r, [95.0, 5.0])
    return _ratio(abs(float(hi)), abs(float(lo)))


def value_at_risk(returns: Any, cutoff: float = 0.05) -> float:
    """Historical VaR, a return quantile (usually < 0): ``percentile(r, 100 * cutoff)`` (as empyrical)."""
    r = _clean(returns)
    if r.size < MIN_PERIODS:
        return _NAN
    return float(np.percentile(r, 100.0 * cutoff))


def stability(returns: Any) -> float:
    """R^2 of an OLS fit of ``y_t = cumsum(log1p(r))_t`` on ``t = 0..n-1`` (empyrical's
    ``stability_of_timeseries``).

    ``R^2 = cov(t, y)^2 / (var(t) var(y))``; a constant ``y`` -> NaN.
    """
    r = _clean(returns)
    if r.size < MIN_PERIODS:
        return _NAN
    y = np.cumsum(np.log1p(r))
    t = np.arange(r.size, dtype=np.float64)
    tc, yc = t - t.mean(), y - y.mean()
    syy = float(yc @ yc)
    if syy == 0.0 or not np.isfinite(syy):
        return _NAN
    return float(tc @ yc) ** 2 / (float(tc @ tc) * syy)


def turnover(turnover: Any) -> float:
    """Mean of a per-period turnover series: ``mean(turnover)`` over its non-NaN values."""
    x = _clean(turnover)
    if x.size < MIN_PERIODS:
        return _NAN
    return float(np.mean(x))


# ------------------------------------------------------------------------------- PSR / DSR / MinTRL
def sharpe_stats(returns: Any, risk_free: float = 0.0) -> tuple[float, int, float, float]:
    """Inputs of the PSR family: ``(SR, n, skew, kurt)`` of ``x = r - rf``.

    ``SR = mean(x) / std(x, ddof=1)`` is PER PERIOD (not annualised); ``skew = m3 / m2^1.5`` and
    ``kurt = m4 / m2^2`` use biased central moments ``m_k = mean((x - mean(x))^k)``; kurt is RAW (normal = 3).
    Fewer than ``MIN_PERIODS`` observations or constant ``x`` -> NaNs (and the true n).
    """
    x = _clean(returns) - risk_free
    n = int(x.size)
    if n < MIN_PERIODS or np.ptp(x) == 0.0:
        return _NAN, n, _NAN, _NAN
    d = x - np.mean(x)
    d2 = d * d
    m2 = float(np.mean(d2))
    m3 = float(np.mean(d2 * d))
    m4 = float(np.mean(d2 * d2))
    sr = float(np.mean(x)) / float(np.std(x, ddof=1))
    return sr, n, m3 / m2**1.5, m4 / (m2 * m2)


def psr_from_stats(sr: Any, n: Any, skew: Any = 0.0, kurt: Any = 3.0, benchmark_sr: Any = 0.0) -> Any:
    """Probabilistic Sharpe ratio (Bailey & López de Prado 2012), vectorised over its arguments.

    ``PSR = Phi((SR - SR*) / sigma)``, ``sigma = sqrt((1 - skew*SR + (kurt - 1)/4 * SR^2) / (n - 1))``,
    with per-period SR / SR* and raw kurtosis. ``n < 2`` or a non-positive variance term -> NaN.
    """
    sr, n, skew, kurt, bench = (np.asarray(v, dtype=np.float64) for v in (sr, n, skew, kurt, benchmark_sr))
    var = 1.0 - skew * sr + (kurt - 1.0) / 4.0 * sr * sr
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (sr - bench) * np.sqrt(n - 1.0) / np.sqrt(var)
    out = np.where((n >= 2) & (var > 0), ndtr(z), np.nan)
    return _scalar_or_array(out)


def expected_max_sharpe(n_trials: Any, variance: Any) -> Any:
    """Expected maximum Sharpe of ``N`` independent zero-skill trials (Bailey & López de Prado 2014).

    ``E[max SR] = sqrt(V) * ((1 - g) * Z^-1(1 - 1/N) + g * Z^-1(1 - 1/(N e)))``, ``g`` = Euler-Mascheroni,
    ``Z^-1`` the standard normal quantile (both terms are upper-tail, i.e. positive for N > 2); ``V`` is the
    variance of the trials' per-period Sharpe ratios. ``N == 1`` -> 0 (no selection); ``N < 1`` raises.
    """
    n = np.asarray(n_trials, dtype=np.float64)
    v = np.asarray(variance, dtype=np.float64)
    if np.any(n < 1):
        raise ValueError("n_trials must be >= 1")
    if np.any(v < 0):
        raise ValueError("variance must be >= 0")
    with np.errstate(divide="ignore", invalid="ignore"):  # N == 1: ndtri(0) = -inf, replaced below
        z = (1.0 - EULER_MASCHERONI) * ndtri(1.0 - 1.0 / n) + EULER_MASCHERONI * ndtri(
            1.0 - 1.0 / (n * math.e)
        )
        out = np.where(n == 1, 0.0, np.sqrt(v) * z)
    return _scalar_or_array(out)


def dsr_from_stats(sr: Any, n: Any, skew: Any, kurt: Any, n_trials: Any, trials_sr_variance: Any) -> Any:
    """Deflated Sharpe ratio: ``PSR(SR* = E[max SR](n_trials, trials_sr_variance))`` (per-period SRs)."""
    return psr_from_stats(sr, n, skew, kurt, expected_max_sharpe(n_trials, trials_sr_variance))


def min_trl_from_stats(
    sr: Any, skew: Any = 0.0, kurt: Any = 3.0, benchmark_sr: Any = 0.0, alpha: float = 0.05
) -> Any:
    """Minimum track record length in periods (Bailey & López de Prado 2012).

    ``MinTRL = 1 + (1 - skew*SR + (kurt - 1)/4 * SR^2) * (Z^-1(1 - alpha) / (SR - SR*))^2``, i.e. the n
    at which ``PSR(SR*) == 1 - alpha``. ``SR <= SR*`` -> +inf (never significant).
    """
    sr, skew, kurt, bench = (np.asarray(v, dtype=np.float64) for v in (sr, skew, kurt, benchmark_sr))
    var = 1.0 - skew * sr + (kurt - 1.0) / 4.0 * sr * sr
    with np.errstate(divide="ignore", invalid="ignore"):
        trl = 1.0 + var * (ndtri(1.0 - alpha) / (sr - bench)) ** 2
    out = np.where(sr > bench, trl, np.inf)
    out = np.where(np.isnan(sr) | np.isnan(bench) | np.isnan(var), np.nan, out)
    return _scalar_or_array(out)


def probabilistic_sharpe_ratio(returns: Any, benchmark_sr: float = 0.0) -> float:
    """PSR of ``returns`` against a per-period benchmark Sharpe (see ``psr_from_stats``, ``sharpe_stats``)."""
    sr, n, skew, kurt = sharpe_stats(returns)
    return float(psr_from_stats(sr, n, skew, kurt, benchmark_sr))


def deflated_sharpe_ratio(returns: Any, n_trials: float, trials_sr_variance: float) -> float:
    """DSR of ``returns`` selected as best of ``n_trials`` whose per-period Sharpes have variance
    ``trials_sr_variance`` (see ``dsr_from_stats``)."""
    sr, n, skew, kurt = sharpe_stats(returns)
    return float(dsr_from_stats(sr, n, skew, kurt, n_trials, trials_sr_variance))


def min_track_record_length(returns: Any, benchmark_sr: float = 0.0, alpha: float = 0.05) -> float:
    """MinTRL (periods) of ``returns`` against a per-period benchmark Sharpe (see ``min_trl_from_stats``)."""
    sr, _, skew, kurt = sharpe_stats(returns)
    return float(min_trl_from_stats(sr, skew, kurt, benchmark_sr, alpha))


# ------------------------------------------------------------------------------------------ as-of KPIs
_BLOCK_ELEMS = 1 << 20  # elements per (strategies x windows x window-length) work block (~8 MB per temp)


def _inception(valid: np.ndarray) -> np.ndarray:
    """Index of the first valid row per row of a (S, T) leading-NaN mask (T when never valid)."""
    return valid.shape[1] - np.count_nonzero(valid, axis=1)


def _psr_dsr(
    ok: np.ndarray,
    sr: np.ndarray,
    n: Any,
    m2: np.ndarray,
    m3: np.ndarray,
    m4: np.ndarray,
    bench: np.ndarray | None,
    out: dict[str, np.ndarray],
    sl: tuple[slice, slice],
) -> None:
    """Write PSR (SR* = 0) and, with a per-strategy ``bench`` (sb, 1) = E[max SR], DSR into ``out[*][sl]``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        skew = m3 / m2**1.5
        kurt = m4 / (m2 * m2)
    out["psr"][sl] = np.where(ok, psr_from_stats(sr, n, skew, kurt, 0.0), np.nan)
    if bench is not None:
        out["dsr"][sl] = np.where(ok, psr_from_stats(sr, n, skew, kurt, bench), np.nan)


def _fixed_windows(
    r: np.ndarray,
    to: np.ndarray,
    pos_cnt: np.ndarray,
    to_cnt: np.ndarray,
    inc: np.ndarray,
    length: int,
    lo: int,
    out: dict[str, np.ndarray],
    s0: int,
    min_periods: int,
    bench: np.ndarray | None,
) -> None:
    """Fill ``out[*][s0:s0+sb, t]`` for windows ending at ``t in [lo, T)`` using each window's own values.

    ``r``/``to`` are (sb, T) with NaN -> 0; ``pos_cnt``/``to_cnt`` are (sb, T+1) integer cumulative counts.
    """
    sb, n_t = r.shape
    s1 = s0 + sb
    chunk = max(1, _BLOCK_ELEMS // (sb * length))
    for a in range(lo, n_t, chunk):
        b = min(n_t, a + chunk)
        w = sliding_window_view(r[:, a - length + 1 : b], length, axis=-1)  # (sb, b - a, L)
        tw = sliding_window_view(to[:, a - length + 1 : b], length, axis=-1)
        ends = np.arange(a, b)
        full = (ends - length + 1)[None, :] >= inc[:, None]  # window entirely after inception
        ok = full & (length >= min_periods)

        # moments (buffers reused in place: this loop is the hot path)
        mean = w.mean(axis=-1)
        dev = np.subtract(w, mean[..., None])
        sq = np.multiply(dev, dev)
        ss = sq.sum(axis=-1)
        m2 = ss / length
        m3 = np.multiply(sq, dev, out=dev).mean(axis=-1)
        m4 = np.multiply(sq, sq, out=dev).mean(axis=-1)
        std = np.sqrt(ss / (length - 1)) if length > 1 else np.full_like(mean, np.nan)
        flat = w.max(axis=-1) == w.min(axis=-1)
        ok_disp = ok & ~flat & (std > 0)
        neg = np.minimum(w, 0.0, out=sq)
        down = np.sqrt(np.multiply(neg, neg, out=neg).mean(axis=-1))

        # compounded equity from 1 at the window start; the start counts as a peak
        equity = np.cumprod(np.add(w, 1.0, out=dev), axis=-1, out=dev)
        ann_ret = equity[..., -1] ** (PERIODS_PER_YEAR / length) - 1.0
        peak = np.maximum.accumulate(np.maximum(equity, 1.0, out=sq), axis=-1, out=sq)
        dd = np.divide(np.subtract(peak, equity, out=equity), peak, out=equity)
        mdd = dd.max(axis=-1)
        ulcer = np.sqrt(np.multiply(dd, dd, out=dd).mean(axis=-1))

        hits = pos_cnt[:, a + 1 : b + 1] - pos_cnt[:, a + 1 - length : b + 1 - length]
        n_to = to_cnt[:, a + 1 : b + 1] - to_cnt[:, a + 1 - length : b + 1 - length]
        to_sum = tw.sum(axis=-1)

        with np.errstate(divide="ignore", invalid="ignore"):
            sharpe = np.where(ok_disp, mean / std * _SQRT_PPY, np.nan)
            sortino = np.where(ok & (down > 0), mean / down * _SQRT_PPY, np.nan)
            calmar = np.where(ok & (mdd > 0), ann_ret / mdd, np.nan)
            to_mean = np.where(ok & (n_to >= min_periods), to_sum / n_to, np.nan)
            sr = mean / std
        calmar[~np.isfinite(calmar)] = np.nan
        sl = (slice(s0, s1), slice(a, b))
        out["sharpe"][sl] = sharpe
        out["sortino"][sl] = sortino
        out["annual_return"][sl] = np.where(ok, ann_ret, np.nan)
        out["annual_volatility"][sl] = np.where(ok, std * _SQRT_PPY, np.nan)
        out["max_dd"][sl] = np.where(ok, mdd, np.nan)
        out["calmar"][sl] = calmar
        out["hit_rate"][sl] = np.where(ok, hits / length, np.nan)
        out["turnover"][sl] = to_mean
        out["ulcer"][sl] = np.where(ok, ulcer, np.nan)
        _psr_dsr(ok_disp, sr, length, m2, m3, m4, bench, out, sl)


def _expanding(
    r: np.ndarray,
    to: np.ndarray,
    valid: np.ndarray,
    to_valid: np.ndarray,
    inc: np.ndarray,
    out: dict[str, np.ndarray],
    s0: int,
    min_periods: int,
    bench: np.ndarray | None,
) -> None:
    """Fill ``out[*][s0:s0+sb, :]`` for the since-inception window with cumulative sums
    (``to_valid`` must already exclude rows before the return inception).

    Moments are accumulated on ``d = r - r_inception`` (a shift known at inception, so values at t never
    depend on rows after t) to limit cancellation in the raw-moment formulas.
    """
    sb, n_t = r.shape
    s1 = s0 + sb
    n = np.cumsum(valid, axis=1, dtype=np.int64)
    nf = n.astype(np.float64)
    shift = r[np.arange(sb), np.minimum(inc, n_t - 1)][:, None]
    d = np.where(valid, r - shift, 0.0)
    d2 = d * d
    with np.errstate(divide="ignore", invalid="ignore"):
        mu_d = np.cumsum(d, axis=1) / nf
        e2 = np.cumsum(d2, axis=1) / nf
        e3 = np.cumsum(d2 * d, axis=1) / nf
        e4 = np.cumsum(d2 * d2, axis=1) / nf
        m2 = np.maximum(e2 - mu_d * mu_d, 0.0)
        m3 = e3 - 3.0 * mu_d * e2 + 2.0 * mu_d**3
        m4 = np.maximum(e4 - 4.0 * mu_d * e3 + 6.0 * mu_d**2 * e2 - 3.0 * mu_d**4, 0.0)
        mean = shift + mu_d
        std = np.sqrt(m2 * (nf / (nf - 1.0)))
        runmax = np.fmax.accumulate(np.where(valid, r, np.nan), axis=1)
        runmin = np.fmin.accumulate(np.where(valid, r, np.nan), axis=1)
        ok = n >= min_periods
        ok_disp = ok & (runmax > runmin) & (std > 0)

        x = np.where(valid, r, 0.0)
        neg = np.minimum(x, 0.0)
        down = np.sqrt(np.cumsum(neg * neg, axis=1) / nf)
        equity = np.cumprod(1.0 + x, axis=1)
        peak = np.maximum.accumulate(np.maximum(equity, 1.0), axis=1)
        dd = (peak - equity) / peak
        mdd = np.maximum.accumulate(dd, axis=1)
        ulcer = np.sqrt(np.cumsum(dd * dd, axis=1) / nf)
        ann_ret = equity ** (PERIODS_PER_YEAR / nf) - 1.0
        hits = np.cumsum(x > 0.0, axis=1)
        n_to = np.cumsum(to_valid, axis=1)
        to_mean = np.cumsum(np.where(to_valid, to, 0.0), axis=1) / n_to
        sharpe = mean / std

        calmar = np.where(ok & (mdd > 0), ann_ret / mdd, np.nan)
        sortino = np.where(ok & (down > 0), mean / down * _SQRT_PPY, np.nan)
        hit = np.where(ok, hits / nf, np.nan)
    calmar[~np.isfinite(calmar)] = np.nan
    sl = (slice(s0, s1), slice(None))
    out["sharpe"][sl] = np.where(ok_disp, sharpe * _SQRT_PPY, np.nan)
    out["sortino"][sl] = sortino
    out["annual_return"][sl] = np.where(ok, ann_ret, np.nan)
    out["annual_volatility"][sl] = np.where(ok, std * _SQRT_PPY, np.nan)
    out["max_dd"][sl] = np.where(ok, mdd, np.nan)
    out["calmar"][sl] = calmar
    out["hit_rate"][sl] = hit
    out["turnover"][sl] = np.where(ok & (n_to >= min_periods), to_mean, np.nan)
    out["ulcer"][sl] = np.where(ok, ulcer, np.nan)
    _psr_dsr(ok_disp, sharpe, nf, m2, m3, m4, bench, out, sl)


def asof_kpis(
    returns: np.ndarray,
    turnover: np.ndarray,
    windows: Mapping[str, int | None],
    min_periods: int = MIN_PERIODS,
    n_trials: Any = None,
    trials_sr_variance: Any = None,
) -> dict[str, np.ndarray]:
    """Vectorised as-of KPIs of S strategies on T dates over named trailing windows.

    Inputs: ``returns`` / ``turnover`` are (T, S) float arrays, NaN before each strategy's inception
    (``returns``: leading NaNs only, else ValueError; ``turnover``: NaNs skipped, rows before the return
    inception ignored). ``windows`` maps a name to a length L in days, or None for since inception.

    Output keys ``f"{metric}_{name}"`` for metric in ``ASOF_METRICS``, plus ``"psr"`` (since inception,
    SR* = 0); each a (T, S) array, float64 (``sample_days_*``: int64, the count of non-NaN returns in the
    trailing window, never NaN). Row t uses only rows <= t and equals the 1-D function applied to the
    trailing slice, with rf = required_return = 0: sharpe_ratio, sortino_ratio, annual_return,
    annual_volatility, max_drawdown (max_dd), calmar_ratio, hit_rate, turnover, ulcer_index (ulcer),
    probabilistic_sharpe_ratio (psr).

    DSR (optional): given ``n_trials`` and ``trials_sr_variance`` (scalars or per-strategy (S,) arrays; the
    variance of per-period Sharpes) the output also holds ``dsr_{name}`` and ``"dsr"`` (since inception),
    equal to ``deflated_sharpe_ratio(slice, n_trials[s], trials_sr_variance[s])``.

    NaN: a fixed window is NaN until it is full (L returns since inception; L >= min_periods), the
    expanding one until it holds ``min_periods`` returns; ``turnover_*`` also needs ``min_periods`` non-NaN
    turnover values; zero denominators -> NaN (module docstring). With the default ``min_periods`` the NaN
    masks match the 1-D functions exactly.

    Fixed windows are computed from each window's own values (sliding windows; counts by exact integer
    cumsums), so a run on rows [k:] reproduces every row whose window starts at or after k. The expanding
    window uses cumulative sums from inception.
    """
    ret = np.asarray(returns, dtype=np.float64)
    tov = np.asarray(turnover, dtype=np.float64)
    if ret.ndim != 2:
        raise ValueError(f"returns must be 2-D (T, S), got shape {ret.shape}")
    if tov.shape != ret.shape:
        raise ValueError(f"turnover shape {tov.shape} != returns shape {ret.shape}")
    if min_periods < 1:
        raise ValueError("min_periods must be >= 1")
    for name, length in windows.items():
        if length is not None and (isinstance(length, bool) or int(length) != length or length < 1):
            raise ValueError(f"window {name!r}: length must be a positive int or None, got {length!r}")

    n_t, n_s = ret.shape
    r_st = np.ascontiguousarray(ret.T)  # (S, T): time contiguous
    valid = ~np.isnan(r_st)
    if n_t > 1 and np.any(valid[:, :-1] & ~valid[:, 1:]):
        raise ValueError("returns may only have leading NaNs (before inception); found a NaN after inception")
    to_st = np.ascontiguousarray(tov.T)
    to_valid = ~np.isnan(to_st) & valid
    inc = _inception(valid)
    r0 = np.where(valid, r_st, 0.0)
    to0 = np.where(to_valid, to_st, 0.0)
    zeros = np.zeros((n_s, 1), dtype=np.int64)
    valid_cnt = np.concatenate([zeros, np.cumsum(valid, axis=1, dtype=np.int64)], axis=1)
    pos_cnt = np.concatenate([zeros, np.cumsum(r0 > 0.0, axis=1, dtype=np.int64)], axis=1)
    to_cnt = np.concatenate([zeros, np.cumsum(to_valid, axis=1, dtype=np.int64)], axis=1)

    bench = None
    if (n_trials is None) != (trials_sr_variance is None):
        raise ValueError("give both n_trials and trials_sr_variance, or neither")
    if n_trials is not None:
        sr0 = expected_max_sharpe(np.asarray(n_trials, dtype=np.float64), trials_sr_variance)
        bench = np.broadcast_to(np.asarray(sr0, dtype=np.float64), (n_s,)).reshape(n_s, 1)
    metrics = [m for m in ASOF_METRICS if m != "sample_days"] + (["dsr"] if bench is not None else [])

    def bench_of(s0: int, s1: int) -> np.ndarray | None:
        return None if bench is None else bench[s0:s1]

    def expanding() -> dict[str, np.ndarray]:
        out = {m: np.full((n_s, n_t), np.nan) for m in metrics}
        per_block = max(1, _BLOCK_ELEMS // max(n_t, 1))
        for s0 in range(0, n_s if n_t else 0, per_block):
            s1 = min(n_s, s0 + per_block)
            _expanding(
                r_st[s0:s1],
                to_st[s0:s1],
                valid[s0:s1],
                to_valid[s0:s1],
                inc[s0:s1],
                out,
                s0,
                min_periods,
                bench_of(s0, s1),
            )
        return out

    result: dict[str, np.ndarray] = {}
    full: dict[str, np.ndarray] | None = None
    for name, length in windows.items():
        if length is None:
            out = full = full if full is not None else expanding()
            days = valid_cnt[:, 1:]
        else:
            length = int(length)
            out = {m: np.full((n_s, n_t), np.nan) for m in metrics}
            days = valid_cnt[:, 1:] - valid_cnt[:, np.maximum(np.arange(1, n_t + 1) - length, 0)]
            if min_periods <= length <= n_t:
                per_block = max(1, _BLOCK_ELEMS // (n_t * length))
                for s0 in range(0, n_s, per_block):
                    s1 = min(n_s, s0 + per_block)
                    lo = int(inc[s0:s1].min()) + length - 1
                    if lo < n_t:
                        _fixed_windows(
                            r0[s0:s1],
                            to0[s0:s1],
                            pos_cnt[s0:s1],
                            to_cnt[s0:s1],
                            inc[s0:s1],
                            length,
                            lo,
                            out,
                            s0,
                            min_periods,
                            bench_of(s0, s1),
                        )
        for m in metrics:
            result[f"{m}_{name}"] = np.ascontiguousarray(out[m].T)
        result[f"sample_days_{name}"] = np.ascontiguousarray(days.T)
    full = full if full is not None else expanding()
    result["psr"] = np.ascontiguousarray(full["psr"].T)
    if bench is not None:
        result["dsr"] = np.ascontiguousarray(full["dsr"].T)
    return result


def asof_window_sums(values: np.ndarray, windows: Mapping[str, int | None]) -> dict[str, np.ndarray]:
    """As-of sums of a (T, S) count-like array over the named trailing windows (e.g. trades per window).

    ``values`` is NaN before each strategy's inception (leading NaNs only) and finite after it. Window ``L``:
    ``sum(values[t-L+1 .. t])``, NaN until the window lies entirely after inception (as the other as-of
    metrics); ``None``: the sum since inception. Output key = window name, each a (T, S) float64 array.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"values must be 2-D (T, S), got shape {x.shape}")
    n_t, n_s = x.shape
    valid = ~np.isnan(x)
    if n_t > 1 and np.any(valid[:-1] & ~valid[1:]):
        raise ValueError("values may only have leading NaNs (before inception); found a NaN after inception")
    csum = np.concatenate([np.zeros((1, n_s)), np.cumsum(np.where(valid, x, 0.0), axis=0)])
    count = np.concatenate([np.zeros((1, n_s), np.int64), np.cumsum(valid, axis=0, dtype=np.int64)])
    out: dict[str, np.ndarray] = {}
    for name, length in windows.items():
        if length is None:
            out[name] = np.where(valid, csum[1:], np.nan)
            continue
        lag = np.maximum(np.arange(1, n_t + 1) - int(length), 0)
        full = (count[1:] - count[lag]) >= length
        out[name] = np.where(full, csum[1:] - csum[lag], np.nan)
    return out
