"""Deterministic synthetic daily OHLCV universe (benchmarks, scheduled runs that reach today).

Model. Every symbol's daily log return is a factor model with GJR-GARCH(1,1) volatility and unit-variance
Student-t innovations at every level::

    r[i,t] = g[i] + beta[i] * m[t] + gamma[i] * s[sector(i), t] + e[i,t]

`m` is one market factor (16 % a year), `s` ten sector factors (10 % a year) and `e` the idiosyncratic part.
Each of the three follows its own GJR-GARCH recursion (volatility clustering and a leverage effect), so
calm and turbulent regimes alternate and the market ones are shared by every symbol. A symbol's static
parameters are drawn once: its sector, a target annual volatility (log-uniform in 15-60 %), the share of its
variance explained by the factors (15-50 %, 3/4 market, 1/4 sector; it sets beta and gamma), the t degrees
of freedom (4-5), a positive log drift g (2-8 % a year), a starting price and a typical volume.

The close-to-close return is split into an overnight gap (a quarter of the return plus noise) and the
intraday move, so open != previous close. High and low are exact draws of the maximum and minimum of a
Brownian bridge from open to close with the day's conditional intraday variance. Volume is lognormal around
the symbol's typical level, higher in high-volatility regimes and on days with a large |return|.

Determinism. Every random variate has its own numpy stream, `SeedSequence(seed, spawn_key=(namespace,
kind, index, variate))`: the market stream is keyed by the seed only, the sector streams by (seed, sector),
the symbol streams by (seed, symbol number, variate). All streams start at the calendar epoch (the first
session, 1990-01-02) and a date's values depend only on draws up to that date, so a symbol's rows do not
depend on the universe size, the requested subset, `start` or `end` (later dates are simply appended).
Prices are adjusted prices with no corporate actions: `close_raw == close` and `adj_factor == 1`.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from quantlab.calendar import CALENDAR_START, sessions
from quantlab.curator.contract import OHLCV_SCHEMA

SECTORS: tuple[str, ...] = (  # GICS-like, spelled as in the embedded registry
    "Communication Services",
    "Consumer Discretionary",
    "Consumer Staples",
    "Energy",
    "Financials",
    "Health Care",
    "Industrials",
    "Technology",
    "Materials",
    "Utilities",
)


_PREFIX = "SYN"
_NAMESPACE = 0x5E_17_0D  # first spawn-key word: keeps these streams apart from other uses of the seed
_MARKET, _SECTOR, _SYMBOL = 0, 1, 2  # stream kinds
_V_META, _V_NAME, _V_INNOV, _V_GAP, _V_HIGH, _V_LOW, _V_VOLUME = range(7)  # variates

_DAYS = 252.0
_MARKET_VOL = 0.16
_SECTOR_VOL = 0.10
_FACTOR_DF = 5.0
_MARKET_SHARE = 0.75  # of the factor-explained variance
# GJR-GARCH(1,1): h' = omega + (alpha + lev * [e < 0]) * e**2 + beta * h, omega set by the target variance.
_GARCH_MARKET = (0.03, 0.09, 0.915)
_GARCH_SECTOR = (0.04, 0.05, 0.91)
_GARCH_IDIO = (0.05, 0.04, 0.91)
_GAP_SHARE = 0.25  # share of the close-to-close return realised overnight
_GAP_NOISE = 0.3  # overnight noise, in idiosyncratic conditional sd (cancelled by the intraday move)
_VOLUME_Z_CAP = 6.0  # |standardised return| above this no longer raises volume
_N_FACTORS = 1 + len(SECTORS)
_CHUNK = 64  # symbols per block after the GARCH loop

_NAME_ROOTS = (
    "Acme", "Altair", "Amber", "Apex", "Arbor", "Argent", "Astra", "Aurora", "Beacon", "Birch", "Boreal",
    "Cardinal", "Cedar", "Cobalt", "Condor", "Crescent", "Delta", "Ember", "Falcon", "Granite", "Harbor",
    "Helix", "Horizon", "Iron", "Juniper", "Keystone", "Lumen", "Maple", "Meridian", "Nova", "Oak",
    "Orion", "Pinnacle", "Quarry", "Redwood", "Sable", "Sierra", "Summit", "Tidal", "Vertex", "Willow",
    "Zenith",
)  # fmt: skip
_NAME_NOUNS = (
    ("Media", "Networks", "Telecom", "Broadcasting"),
    ("Retail", "Motors", "Apparel", "Leisure"),
    ("Foods", "Beverages", "Household", "Grocers"),
    ("Energy", "Petroleum", "Drilling", "Pipelines"),
    ("Bancorp", "Capital", "Insurance", "Financial"),
    ("Health", "Pharma", "Biosciences", "Medical"),
    ("Industries", "Aerospace", "Machinery", "Logistics"),
    ("Systems", "Software", "Semiconductor", "Technologies"),
    ("Materials", "Chemicals", "Mining", "Steel"),
    ("Power", "Utilities", "Water", "Electric"),
)
_NAME_SUFFIXES = ("Inc.", "Corp.", "Holdings", "Group", "Co.")


def synthetic_symbols(n_symbols: int) -> list[str]:
    """The first n_symbols synthetic tickers, "SYN0001", "SYN0002", ...; a ticker never depends on n."""
    _check_n(n_symbols)
    return [_symbol(i) for i in range(1, n_symbols + 1)]


def synthetic_registry(n_symbols: int, seed: int = 7) -> pl.DataFrame:
    """symbol, name, sector of the n_symbols synthetic symbols, sorted by symbol (names may repeat)."""
    _check_n(n_symbols)
    _check_seed(seed)
    syms = sorted(synthetic_symbols(n_symbols))
    numbers = [_number(s) for s in syms]
    params = _symbol_params(seed, numbers)
    names = []
    for num, sector in zip(numbers, params["sector"], strict=True):
        u = _rng(seed, _SYMBOL, num, _V_NAME).random(3)
        root = _NAME_ROOTS[int(u[0] * len(_NAME_ROOTS))]
        noun = _NAME_NOUNS[sector][int(u[1] * len(_NAME_NOUNS[sector]))]
        names.append(f"{root} {noun} {_NAME_SUFFIXES[int(u[2] * len(_NAME_SUFFIXES))]}")
    return pl.DataFrame(
        {"symbol": syms, "name": names, "sector": [SECTORS[k] for k in params["sector"]]},
        schema={"symbol": pl.String, "name": pl.String, "sector": pl.String},
    )


def synthetic_ohlcv(
    n_symbols: int, start: dt.date, end: dt.date, seed: int = 7, symbols: list[str] | None = None
) -> pl.DataFrame:
    """Daily bars of the synthetic universe on the NYSE sessions in [start, end], sorted by symbol, date.

    `symbols` restricts the output to a subset of `synthetic_symbols(n_symbols)` (same rows as filtering the
    full output). Raises ValueError for n_symbols < 1, start before CALENDAR_START, end < start or an unknown
    symbol.
    """
    _check_n(n_symbols)
    _check_seed(seed)
    if start < CALENDAR_START:
        raise ValueError(f"start {start} is before the calendar start {CALENDAR_START}")
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    universe = synthetic_symbols(n_symbols)
    if symbols is None:
        chosen = sorted(universe)
    else:
        unknown = sorted(set(symbols) - set(universe))
        if unknown:
            raise ValueError(f"not among the {n_symbols} synthetic symbols: {unknown[:5]}")
        chosen = sorted(set(symbols))
    days = sessions(start, end)
    if not chosen or not days:
        return pl.DataFrame(schema=OHLCV_SCHEMA)
    n_all = len(sessions(CALENDAR_START, end))  # sessions since the epoch; streams are anchored there
    cols = _simulate(seed, [_number(s) for s in chosen], n_all, n_all - len(days))
    n_days = len(days)
    sym = pl.Series("symbol", chosen, dtype=pl.String).gather(np.repeat(np.arange(len(chosen)), n_days))
    date = np.tile(np.array(days, dtype="datetime64[D]"), len(chosen))
    close = cols["close"]
    return pl.DataFrame(
        {
            "symbol": sym,
            "date": pl.Series("date", date, dtype=pl.Date),
            "open": cols["open"],
            "high": cols["high"],
            "low": cols["low"],
            "close": close,
            "close_raw": close,
            "adj_factor": np.ones_like(close),
            "volume": cols["volume"],
        },
        schema=OHLCV_SCHEMA,
    )


def _simulate(seed: int, numbers: list[int], n_all: int, first: int) -> dict[str, np.ndarray]:
    """Simulate sessions [0, n_all) from the epoch for the given symbol numbers; return rows [first, n_all).

    Returns open/high/low/close/volume flattened symbol-major. Every operation on a symbol is elementwise or
    a recursion along its own dates, so a symbol's values never depend on the other symbols simulated.
    """
    p = _symbol_params(seed, numbers)
    shock, var = _garch_paths(seed, numbers, p, n_all)
    n, n_out = len(numbers), n_all - first
    cols = {name: np.empty((n, n_out)) for name in ("open", "high", "low", "close")}
    cols["volume"] = np.empty((n, n_out), dtype=np.int64)
    factors = (np.ascontiguousarray(shock[:, :_N_FACTORS].T), np.ascontiguousarray(var[:, :_N_FACTORS].T))
    for c0 in range(0, n, _CHUNK):  # blocks of symbols keep the temporaries small
        block = slice(c0, min(c0 + _CHUNK, n))
        bars = _bars(
            seed, numbers[block], {k: v[block] for k, v in p.items()}, shock, var, factors, block, first
        )
        for name, values in bars.items():
            cols[name][block] = values
    return {name: a.ravel() for name, a in cols.items()}


def _garch_paths(
    seed: int, numbers: list[int], p: dict[str, np.ndarray], n_all: int
) -> tuple[np.ndarray, np.ndarray]:
    """Shocks and conditional variances (sessions x columns): market, the sectors, then the symbols.

    One GJR-GARCH(1,1) recursion for all columns: a loop over dates with numpy across columns.
    """
    n, nf = len(numbers), _N_FACTORS
    z = np.empty((n_all, nf + n))
    z[:, 0] = _unit_t(_rng(seed, _MARKET, 0, _V_INNOV), _FACTOR_DF, n_all)
    for j in range(len(SECTORS)):
        z[:, 1 + j] = _unit_t(_rng(seed, _SECTOR, j, _V_INNOV), _FACTOR_DF, n_all)
    if n:
        z[:, nf:] = np.stack(
            [
                _unit_t(_rng(seed, _SYMBOL, num, _V_INNOV), df, n_all)
                for num, df in zip(numbers, p["df"], strict=True)
            ],
            axis=1,
        )
    target = np.concatenate(
        [[_MARKET_VOL**2 / _DAYS], np.full(len(SECTORS), _SECTOR_VOL**2 / _DAYS), p["idio_var"]]
    )
    garch = np.array([_GARCH_MARKET] + [_GARCH_SECTOR] * len(SECTORS) + [_GARCH_IDIO] * n)
    alpha, lev, beta = garch[:, 0], garch[:, 1], garch[:, 2]
    omega = (1.0 - alpha - 0.5 * lev - beta) * target
    alpha_neg = alpha + lev
    var = np.empty_like(z)
    var[0] = target
    for t in range(n_all):  # z becomes the shocks in place
        e = z[t]
        e *= np.sqrt(var[t])
        if t + 1 < n_all:
            h = var[t + 1]
            np.multiply(beta, var[t], out=h)
            h += omega
            h += np.where(e < 0.0, alpha_neg, alpha) * (e * e)
    return z, var


def _bars(
    seed: int,
    numbers: list[int],
    p: dict[str, np.ndarray],
    shock: np.ndarray,
    var: np.ndarray,
    factors: tuple[np.ndarray, np.ndarray],
    block: slice,
    first: int,
) -> dict[str, np.ndarray]:
    """OHLCV rows [first, n_all) of a block of symbols (symbols x sessions) from the GARCH paths."""
    nf, n_all = _N_FACTORS, shock.shape[0]
    out = slice(first, n_all)
    cols = slice(nf + block.start, nf + block.stop)
    sec = 1 + p["sector"]  # row of the sector factor
    beta, gamma, drift = p["beta"][:, None], p["gamma"][:, None], p["drift"][:, None]

    # returns and log prices from the epoch, then the requested window
    fac_e, fac_h = factors
    ret = drift + beta * fac_e[0] + gamma * fac_e[sec] + shock[:, cols].T
    log_p0 = p["log_p0"][:, None]
    log_level = np.concatenate([log_p0, log_p0 + np.cumsum(ret, axis=1)], axis=1)  # column t: close t-1
    log_prev, log_close = log_level[:, first:n_all], log_level[:, first + 1 :]
    ret = ret[:, out]
    h_idio = np.ascontiguousarray(var[out, cols].T)
    h_tot = beta**2 * fac_h[0, out] + gamma**2 * fac_h[sec, out] + h_idio

    # window variates, each from its own stream drawn from the epoch (prefix-stable) and sliced
    gap, ex_hi, ex_lo, vol_noise = (np.empty_like(ret) for _ in range(4))
    for c, num in enumerate(numbers):
        gap[c] = _rng(seed, _SYMBOL, num, _V_GAP).standard_normal(n_all)[out]
        ex_hi[c] = _rng(seed, _SYMBOL, num, _V_HIGH).standard_exponential(n_all)[out]
        ex_lo[c] = _rng(seed, _SYMBOL, num, _V_LOW).standard_exponential(n_all)[out]
        vol_noise[c] = _rng(seed, _SYMBOL, num, _V_VOLUME).standard_normal(n_all)[out]

    # overnight gap and intraday move (they add up to the close-to-close return)
    log_open = log_prev + _GAP_SHARE * ret + _GAP_NOISE * np.sqrt(h_idio) * gap
    move = log_close - log_open
    var_day = (1.0 - _GAP_SHARE) ** 2 * h_tot + _GAP_NOISE**2 * h_idio
    # max / min of a Brownian bridge from 0 to `move` with variance var_day: P(M > m) = exp(-2 m (m - b) / v)
    log_high = log_open + 0.5 * (move + np.sqrt(move * move + 2.0 * var_day * ex_hi))
    log_low = log_open + 0.5 * (move - np.sqrt(move * move + 2.0 * var_day * ex_lo))
    open_, close = np.exp(log_open), np.exp(log_close)
    high = np.maximum(np.exp(log_high), np.maximum(open_, close))  # exact invariants despite rounding
    low = np.minimum(np.exp(log_low), np.minimum(open_, close))

    # volume: lognormal, up in high-volatility regimes and on large-|return| days (capped effect)
    z_abs = np.minimum(np.abs(ret - drift) / np.sqrt(h_tot), _VOLUME_Z_CAP)
    log_vol = (
        p["log_volume"][:, None]
        + 0.5 * np.log(h_tot / (p["vol"][:, None] ** 2 / _DAYS))
        + 0.3 * (z_abs - 0.8)
        + 0.35 * vol_noise
    )
    volume = np.maximum(np.rint(np.exp(log_vol)), 1.0).astype(np.int64)
    return {"open": open_, "high": high, "low": low, "close": close, "volume": volume}


def _symbol_params(seed: int, numbers: list[int]) -> dict[str, np.ndarray]:
    """Static per-symbol parameters, each symbol from its own stream (daily units where it applies)."""
    u = np.array([_rng(seed, _SYMBOL, num, _V_META).random(8) for num in numbers]).reshape(len(numbers), 8)
    sector = np.minimum((u[:, 0] * len(SECTORS)).astype(np.int64), len(SECTORS) - 1)
    vol = 0.15 * 4.0 ** u[:, 1]  # annual, log-uniform in [15 %, 60 %]
    explained = 0.15 + 0.35 * u[:, 2]  # share of variance from the factors
    total_var = vol**2 / _DAYS
    beta = np.sqrt(explained * _MARKET_SHARE * vol**2) / _MARKET_VOL
    gamma = np.sqrt(explained * (1.0 - _MARKET_SHARE) * vol**2) / _SECTOR_VOL
    return {
        "sector": sector,
        "vol": vol,
        "beta": beta,
        "gamma": gamma,
        "idio_var": (1.0 - explained) * total_var,
        "drift": (0.02 + 0.06 * u[:, 3]) / _DAYS,  # log drift, 2-8 % a year
        "df": 4.0 + u[:, 4],
        "log_p0": np.log(5.0) + np.log(30.0) * u[:, 5],  # 5-150 at the epoch
        "log_volume": np.log(2e4) + np.log(250.0) * u[:, 6],  # typical volume 20k-5M shares
    }


def _unit_t(rng: np.random.Generator, df: float, size: int) -> np.ndarray:
    """Student-t draws scaled to unit variance (prefix-stable: element i only uses the first i+1 draws)."""
    return rng.standard_t(df, size) * np.sqrt((df - 2.0) / df)


def _rng(seed: int, kind: int, index: int, variate: int) -> np.random.Generator:
    key = np.random.SeedSequence(seed, spawn_key=(_NAMESPACE, kind, index, variate))
    return np.random.Generator(np.random.PCG64(key))


def _symbol(number: int) -> str:
    return f"{_PREFIX}{number:04d}"


def _number(symbol: str) -> int:
    return int(symbol[len(_PREFIX) :])


def _check_n(n_symbols: int) -> None:
    if isinstance(n_symbols, bool) or not isinstance(n_symbols, int | np.integer) or n_symbols < 1:
        raise ValueError(f"n_symbols must be an integer >= 1, got {n_symbols!r}")


def _check_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
