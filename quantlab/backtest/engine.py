"""Vectorized target-weight backtest engine over (date x symbol) matrices, next-bar execution.

Inputs are ``(T, N)`` matrices (rows = sessions, columns = symbols) of adjusted ``open_``/``close``
prices (NaN = no bar), target weights decided at each close (NaN = 0), and a ``(T,)`` boolean
``rebalance`` mask of the days whose decision is executed.

Model
-----
* Clock. Time is the sequence of 2T price points ``open_0, close_0, open_1, close_1, ...``
  (point ``2t`` is the open of day t, ``2t + 1`` its close).
* Execution. A decision taken at the close of day t with ``rebalance[t]`` executes at the
  ``cfg.price`` point (open or close) of day ``t + cfg.lag`` (``lag >= 1``: never on bar t).
  Decisions whose execution day is ``>= T`` are dropped. Before the first execution the
  portfolio is all cash.
* Positions. An execution at point e resets the portfolio to the target weights w (fractions of
  the portfolio value; long > 0, short < 0) and cash ``cash = 1 - sum(w)`` (signed weights: short
  proceeds are held as cash, ``cash < 0`` is borrowing). Between executions the positions drift
  with prices: relative to its value just after e, the portfolio is worth
  ``A(p) = cash * G(p) / G(e) + sum_i w_i P_i(p) / P_i(e)`` at point p, where ``G`` is the cash
  growth below (``G == 1`` without a cash return, i.e. ``A(p) = 1 + sum_i w_i (P_i(p) / P_i(e) - 1)``).
* Cash return (optional, ``cash_return``: (T,) simple returns, default None = 0). ``cash_return[t]``
  is the return of cash from close t-1 to close t; the whole of it accrues at the close point of
  day t (on the intraday step, before an execution at that close) on the cash balance held during
  that step: the balance after an open execution of day t, the balance of the previous regime
  for a close execution. One rate for both signs: a negative balance (leverage) pays it, short
  proceeds earn it. ``G(p) = prod_{s : close_s <= p} (1 + cash_return[s])``; the book held before the
  first execution is all cash and earns it too, day 0 included (an empty book's gross return is
  exactly ``cash_return``). Must be finite and > -1; all zeros is treated as None.
* Gross returns. The step return from point p-1 to p is ``A(p) / A(p-1)`` under the weights of
  the last execution at or before p-1. The daily gross return of day t is the product of the
  overnight step ``close_{t-1} -> open_t`` and the intraday step ``open_t -> close_t``, minus 1
  (day 0 has only its intraday step). Gross returns exclude costs.
* Turnover and costs. At an execution, ``turnover = sum_i |w_target_i - w_drifted_i|`` where
  ``w_drifted`` are the value-weighted weights just before the trade. The cost is
  ``c = turnover * (fee_bps + slippage_bps) / 1e4``, a fraction of the pre-trade portfolio value:
  the value is multiplied by ``1 - c`` at that point and the target weights apply to the post-cost
  value. Hence ``net_t = (1 + gross_t) * prod(1 - c over day t's executions) - 1`` (the cost is
  applied at its point; because steps are value ratios this equals applying it at the close) and
  the ``cost`` array is ``(1 + gross) * c`` (exactly 0 on a day without execution) and
  ``net = gross - cost``, while
  ``trade_cost`` holds the per-trade ``|dw| * (fee_bps + slippage_bps) / 1e4`` that sum to ``c``.
* Participation cap (optional, ``cfg.participation_cap`` with ``adv``: (T, N) average daily traded
  value in units of the portfolio's initial capital, i.e. of its value at inception = 1). An order's
  notional is ``|dw| * V`` where ``V`` is the pre-trade portfolio value in those units (net of all
  costs since inception). The row of the DECISION day is used (``adv[t]`` for the decision at
  close t, known then), not that of the execution day. An order with
  ``|dw| * V > participation_cap * adv[t, i]`` is cut to ``dw = sign(dw) * participation_cap *
  adv[t, i] / V``: the position moves toward its target by at most the cap and stays off target
  (the next execution starts from there). A NaN ``adv`` means no trading at all in that symbol
  (limit 0, the conservative choice: the order is cut to nothing; ``+inf`` means no limit). The
  executed weights ``w_x = w_drifted + dw`` then play the role of the targets: turnover and costs
  use the executed ``dw``, and ``w_x`` applies to the post-cost value (like every position, an
  uncut or untraded one bears its pro-rata share of the cost: its weight is kept).
  ``trade_capped`` flags the trade rows that were cut; ``capped_trades[t]`` counts the orders
  (``|dw_desired| > 1e-12``) cut at day t's execution, including those cut to nothing (no trade
  row), so it is >= the number of flagged rows of day t. Without a cap both are all False / 0.
  With a cap the state after an execution depends on the state before it, hence on the whole
  history since the first execution (and on the capital's growth since inception): callers must
  run from inception, a run started later does not reproduce a slice of a longer run.
* Legs. At each step the long contribution is
  ``sum_{w_i > 0} w_i (P_i(p) - P_i(p-1)) / P_i(e) / A(p-1)`` (shorts: ``w_i < 0``; cash, on the
  intraday step of day t only: ``cash * G(open_t) / G(e) / A(open_t) * cash_return[t]``). The daily leg
  return compounds the steps relative to the start-of-day value:
  ``leg = leg_overnight + (1 + gross_overnight) * leg_intraday``, so
  ``long_ret + short_ret + cash_ret = gross`` (``cash_ret`` is exactly 0 without a cash return).
* Missing prices. For valuation a held symbol's missing price is carried forward (last known
  price, i.e. 0 return). A target on a symbol without a price at the execution point is set to 0:
  it is not bought, and if it is held it is closed at its last known price (reported as its
  ``trade_price``).
* Exposures. ``weights[t]`` are the drifted weights ``h_i / V`` at the close of day t (after any
  execution at that close); ``gross_exposure = sum |weights|``, ``net_exposure = sum weights``.
* Trades. One row per (execution, symbol) with ``|dw| > 1e-12``, ``dw = w_target - w_drifted``, in
  execution order then symbol order; ``trade_day`` is the execution day ``t + lag``.

No guard is made against the portfolio value reaching 0 or below (e.g. a levered short squeeze):
returns are meaningless from there on.

Implementation: a running maximum over an index array gives, for every point, the last execution
before it; each execution's shares per unit of value ``q = w / P(e)`` are gathered row-wise for all
points and multiplied by the prices, so position values, the book value ``A``, its long side and the
drifted weights are whole-array operations. The (2T, N) work runs over cache-sized blocks of days
(about 1 MB: 131 days for N = 500, a few dozen iterations, never one per bar) instead of allocating
several (2T, N) temporaries; gaps are forward-filled block by block, the last known prices being
carried from one block to the next.
Without a participation cap the targets of all executions are known up front and each block's are
processed at once. With a cap each execution depends on the drifted book before it, so the
executions (only them, never the bars in between) are processed by a Python loop of vector
operations over the symbols; the valuation of the points stays block-wise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

TRADE_EPS = 1e-12


@dataclass(frozen=True)
class ExecutionConfig:
    """How and when decisions trade: execution price, lag in sessions, costs in basis points.

    ``participation_cap`` (None = no cap): the largest order notional per symbol and execution as a
    fraction of the symbol's average daily traded value (``adv`` of ``run_backtest``).
    """

    price: Literal["open", "close"] = "open"
    lag: int = 1
    fee_bps: float = 0.0
    slippage_bps: float = 0.0
    participation_cap: float | None = None  # max |order notional| / ADV per symbol and execution

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError on an unknown price, a lag < 1, negative / non-finite costs or a bad cap."""
        if self.price not in ("open", "close"):
            raise ValueError(f"price must be 'open' or 'close', got {self.price!r}")
        if isinstance(self.lag, bool) or not isinstance(self.lag, int | np.integer):
            raise ValueError(f"lag must be an int, got {self.lag!r}")
        if self.lag < 1:
            raise ValueError(f"lag must be >= 1 (no same-bar execution), got {self.lag}")
        for name in ("fee_bps", "slippage_bps"):
            v = getattr(self, name)
            if not np.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be finite and >= 0, got {v!r}")
        cap = self.participation_cap
        if cap is not None and (
            isinstance(cap, bool)
            or not isinstance(cap, int | float | np.integer | np.floating)
            or not np.isfinite(cap)
            or cap <= 0
        ):
            raise ValueError(f"participation_cap must be None or finite and > 0, got {cap!r}")

    @property
    def cost_rate(self) -> float:
        """Cost per unit of turnover (fraction of portfolio value)."""
        return (self.fee_bps + self.slippage_bps) / 1e4


@dataclass(frozen=True)
class BacktestResult:
    """Per-day arrays of length T (simple returns, exposures at the close) and the trade list.

    ``cash_ret``: the cash leg of ``gross`` (0 without ``cash_return``); ``capped_trades``: (T,) int64
    number of orders cut by the participation cap; ``trade_capped``: per trade row, cut by the cap.
    """

    gross: np.ndarray
    cost: np.ndarray
    net: np.ndarray
    long_ret: np.ndarray
    short_ret: np.ndarray
    turnover: np.ndarray
    gross_exposure: np.ndarray
    net_exposure: np.ndarray
    trade_day: np.ndarray
    trade_symbol: np.ndarray
    trade_dw: np.ndarray
    trade_price: np.ndarray
    trade_cost: np.ndarray
    weights: np.ndarray
    cash_ret: np.ndarray
    capped_trades: np.ndarray
    trade_capped: np.ndarray


def _check_inputs(
    open_: np.ndarray, close: np.ndarray, targets: np.ndarray, rebalance: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    open_ = np.asarray(open_, dtype=np.float64)
    close = np.asarray(close, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)
    rebalance = np.asarray(rebalance)
    if open_.ndim != 2:
        raise ValueError(f"open_ must be 2-D (T, N), got shape {open_.shape}")
    if close.shape != open_.shape:
        raise ValueError(f"close shape {close.shape} != open_ shape {open_.shape}")
    if targets.shape != open_.shape:
        raise ValueError(f"targets shape {targets.shape} != open_ shape {open_.shape}")
    if rebalance.shape != (open_.shape[0],):
        raise ValueError(f"rebalance shape {rebalance.shape} != ({open_.shape[0]},)")
    if rebalance.dtype != np.bool_:
        if rebalance.dtype.kind not in "iu" or not np.isin(rebalance, (0, 1)).all():
            raise ValueError(f"rebalance must be boolean, got dtype {rebalance.dtype}")
        rebalance = rebalance.astype(bool)
    return open_, close, targets, rebalance


def _check_extras(
    cfg: ExecutionConfig, T: int, N: int, cash_return: np.ndarray | None, adv: np.ndarray | None
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Validated ``cash_return`` (None when absent or all zero) and ``adv`` (None without a cap)."""
    if cash_return is not None:
        cash_return = np.asarray(cash_return, dtype=np.float64)
        if cash_return.shape != (T,):
            raise ValueError(f"cash_return shape {cash_return.shape} != ({T},)")
        if not (np.isfinite(cash_return).all() and (cash_return > -1.0).all()):
            raise ValueError("cash_return must be finite and > -1")
        if not cash_return.any():
            cash_return = None  # zero cash return: the plain path, bit for bit
    if adv is not None:
        adv = np.asarray(adv, dtype=np.float64)
        if adv.shape != (T, N):
            raise ValueError(f"adv shape {adv.shape} != ({T}, {N})")
        if (adv < 0).any():  # NaN (no trading) and +inf (no limit) are allowed
            raise ValueError("adv must be >= 0 (NaN = no trading allowed)")
    if cfg.participation_cap is None:
        return cash_return, None
    if adv is None:
        raise ValueError("adv is required when cfg.participation_cap is set")
    return cash_return, adv


def _execute_capped(
    W: np.ndarray,
    px: np.ndarray,
    lim: np.ndarray,
    growth: np.ndarray | None,
    q: np.ndarray,
    cash_prev: float,
    v_post: float,
    rate: float,
    out: tuple[np.ndarray, ...],
) -> float:
    """Executions of one block in order under a participation cap; returns the post-trade value.

    ``W``: (k, N) cleaned targets, overwritten with the executed weights; ``px``: their (gap-filled)
    execution prices; ``lim``: ``participation_cap * adv`` of their decision rows (NaN adv -> 0), in
    capital units; ``growth``: cash growth of the regime in force at each execution since it began
    (None = 1); ``q``, ``cash_prev``, ``v_post``: shares per unit of value, cash weight and post-trade
    value (capital units) of the regime in force before the first one. ``out`` = (shares, cash, wpos,
    wneg, turnover, dw, capped), each with a leading axis of length k, filled in place.
    """
    q_out, cash_out, wpos, wneg, turn, dw_out, capped = out
    for j in range(W.shape[0]):
        hv = q * px[j]  # position values relative to the previous regime's post-trade value
        a = hv.sum() + (cash_prev if growth is None else cash_prev * growth[j])
        v_pre = v_post * a
        hv /= a  # drifted weights
        dw = np.subtract(W[j], hv, out=dw_out[j])
        adw = np.abs(dw)
        over = adw > lim[j] / v_pre
        if over.any():
            cut = np.copysign(lim[j][over] / v_pre, dw[over])
            dw[over] = cut
            W[j][over] = hv[over] + cut
            np.logical_and(over, adw > TRADE_EPS, out=capped[j])
            np.abs(dw, out=adw)
        w = W[j]
        wpos[j] = w[w > 0.0].sum()
        wneg[j] = w[w < 0.0].sum()
        cash_prev = cash_out[j] = 1.0 - (wpos[j] + wneg[j])
        turn[j] = adw.sum()
        q = np.divide(w, px[j], out=q_out[j])
        v_post = v_pre * (1.0 - turn[j] * rate)
    return v_post


_CHUNK_BYTES = 1 << 20  # size of one (2D, N) float64 chunk buffer: D days per chunk (measured)
_MIN_CHUNK_DAYS = 8
_TINY = float(np.finfo(np.float64).tiny)  # smallest normal float: accepted prices are >= this


def _fill_chunk(x: np.ndarray, nanx: np.ndarray, carry: np.ndarray) -> None:
    """In place: carry each symbol's last known price forward (across chunks via ``carry``).

    A price never seen yet becomes ``_TINY``: such a symbol is never held (its target is 0 at any
    execution without a price), so it only ever enters as ``0 * _TINY = 0``.
    ``carry`` is updated to the last known price of each symbol at the end of the chunk.
    """
    new_carry = np.where(nanx[-1], carry, x[-1])
    # Columns needing a forward fill: a gap after a known price, in this chunk or before it.
    after_known = (nanx[1:] > nanx[:-1]).any(axis=0) | (nanx[0] & ~np.isnan(carry))
    cols = np.flatnonzero(after_known)
    if cols.size:
        sub = x[:, cols]
        first = sub[0]
        np.copyto(first, carry[cols], where=np.isnan(first))  # a leading gap takes the carried price
        idx = np.arange(x.shape[0])[:, None] * ~nanx[:, cols]  # own row where known, else 0
        np.maximum.accumulate(idx, axis=0, out=idx)  # row of the last known price
        idx *= cols.size
        idx += np.arange(cols.size)
        filled = sub.ravel().take(idx)
        x[:, cols] = filled
        new_carry[cols] = filled[-1]
    np.fmax(x, _TINY, out=x)  # remaining NaN -> _TINY (valid prices were checked to be >= _TINY)
    carry[:] = new_carry


def run_backtest(
    open_: np.ndarray,
    close: np.ndarray,
    targets: np.ndarray,
    rebalance: np.ndarray,
    cfg: ExecutionConfig,
    *,
    cash_return: np.ndarray | None = None,
    adv: np.ndarray | None = None,
) -> BacktestResult:
    """Simulate target weights with next-bar execution (see the module docstring for the model).

    ``open_``, ``close``, ``targets``: (T, N); ``rebalance``: (T,) bool. Optional ``cash_return``:
    (T,) simple return of cash from close t-1 to close t; ``adv``: (T, N) average daily traded value
    in units of the initial capital, read on the decision day, required iff
    ``cfg.participation_cap`` is set (ignored otherwise). Raises ValueError on shape mismatches,
    non-positive / infinite prices, infinite targets, a bad ``cfg``, ``cash_return`` or ``adv``.
    """
    cfg.validate()
    open_, close, targets, rebalance = _check_inputs(open_, close, targets, rebalance)
    T, N = open_.shape
    cash_return, adv = _check_extras(cfg, T, N, cash_return, adv)
    npts = 2 * T
    rate = cfg.cost_rate
    at_close = cfg.price == "close"

    # Executions, sorted by point (at most one per day).
    dec = np.flatnonzero(rebalance)
    exe_day = dec + int(cfg.lag)
    keep = exe_day < T
    dec, exe_day = dec[keep], exe_day[keep]
    exe_pt = 2 * exe_day + int(at_close)
    K = dec.size
    cash = np.ones(K + 1)  # cash weight of each execution; cash[-1] is the initial all-cash book
    wpos = np.zeros(K)
    wneg = np.zeros(K)
    turn_k = np.zeros(K)

    # Regime of each point: the last execution strictly before it (-1 = all cash).
    mark = np.full(npts, -1, dtype=np.intp)
    mark[exe_pt] = np.arange(K)
    pre = np.full(npts, -1, dtype=np.intp)
    if npts:
        np.maximum.accumulate(mark[:-1], out=pre[1:])

    # Cash growth of the regime in force at each point since its execution (None: no cash return).
    growth = None
    if cash_return is not None:
        g_pt = np.empty(npts)  # G: cumulative cash growth, the day's return accruing at its close
        np.cumprod(1.0 + cash_return, out=g_pt[1::2])
        g_pt[0::2] = np.concatenate(([1.0], g_pt[1:-1:2]))
        growth = g_pt / np.append(g_pt[exe_pt], 1.0)[pre]

    # Participation cap: sequential executions, their actual trades and the portfolio value.
    capping = adv is not None
    if capping:
        dw_k = np.empty((K, N))
        capped_k = np.zeros((K, N), dtype=bool)
        v_post = 1.0  # post-trade value of the regime in force, in units of the initial capital

    tot = np.empty(npts)  # value of the (pre-trade) book at each point, relative to its execution
    lpre = np.empty(npts)  # ... of its long positions
    weights = np.empty((T, N))
    cap = K * N  # upper bound on the number of trades; untouched pages cost nothing
    t_day = np.empty(cap, dtype=np.int64)
    t_sym = np.empty(cap, dtype=np.int64)
    t_dw, t_px, t_cost = np.empty(cap), np.empty(cap), np.empty(cap)
    t_capped = np.empty(cap if capping else 0, dtype=bool)
    n_tr = 0
    sym_ids = np.arange(N, dtype=np.int64)

    # Cache-sized chunks of D days (2D points): the whole pipeline runs on one chunk at a time.
    D = int(max(_MIN_CHUNK_DAYS, _CHUNK_BYTES // (16 * max(N, 1))))
    xbuf = np.empty((2 * min(D, T), N))  # the chunk's prices, interleaved and gap-filled
    gbuf = np.empty_like(xbuf)
    # Shares per unit of post-trade value, q = w / P(e): row 0 = regime in force at the chunk start
    # (zeros = all cash), rows 1.. = this chunk's executions.
    qbuf = np.zeros((1 + min(D, T), N))
    carry = np.full(N, np.nan)
    starts = np.arange(0, T, D)
    kb = np.searchsorted(exe_pt, 2 * np.append(starts, T))
    with np.errstate(invalid="ignore"):  # an infinite price gives 0 * inf = NaN, rejected below
        for c, d0 in enumerate(starts.tolist()):
            d1 = min(T, d0 + D)
            p0, p1 = 2 * d0, 2 * d1
            k0, k1 = int(kb[c]), int(kb[c + 1])
            rows = exe_pt[k0:k1] - p0  # chunk-local execution points
            x = xbuf[: p1 - p0]
            x[0::2] = open_[d0:d1]
            x[1::2] = close[d0:d1]

            # Prices: NaN detection and positivity in one reduction (infinities are caught below).
            nan_raw = None
            if N:
                lo = x.min()
                if np.isnan(lo):
                    nanx = np.isnan(x)
                    nan_raw = nanx[rows]
                    lo = np.fmin.reduce(x, axis=None)  # NaN-ignoring (NaN if all missing)
                    _fill_chunk(x, nanx, carry)
                else:
                    carry[:] = x[-1]
                if lo < _TINY:  # also catches 0, negatives and subnormals
                    raise ValueError("prices must be finite and > 0 where present (NaN = no bar)")

            # Executions of this chunk: target weights and shares, before anything is valued with them.
            if k1 > k0:
                W = targets[dec[k0:k1]]
                px = x[rows]
                if nan_raw is not None and nan_raw.any():
                    np.putmask(W, nan_raw, 0.0)  # no price at the execution point: cannot trade
                w_long = np.fmax(W, 0.0)  # NaN -> 0 in both legs
                w_short = np.fmin(W, 0.0)
                np.add(w_long, w_short, out=W)
                wpos[k0:k1] = w_long.sum(axis=1)
                wneg[k0:k1] = w_short.sum(axis=1)
                sw = wpos[k0:k1] + wneg[k0:k1]
                if not np.isfinite(sw).all():
                    raise ValueError("targets must be finite (NaN = 0)")
                if capping:
                    lim = adv[dec[k0:k1]] * cfg.participation_cap
                    np.putmask(lim, np.isnan(lim), 0.0)  # unknown ADV: no trading
                    out = (qbuf[1 : 1 + k1 - k0], cash[k0:k1], wpos[k0:k1], wneg[k0:k1])
                    out += (turn_k[k0:k1], dw_k[k0:k1], capped_k[k0:k1])
                    g_e = None if growth is None else growth[exe_pt[k0:k1]]
                    # cash[k0 - 1]: the regime in force before (cash[-1] = 1: the initial all-cash book)
                    v_post = _execute_capped(W, px, lim, g_e, qbuf[0], cash[k0 - 1], v_post, rate, out)
                else:
                    np.divide(W, px, out=qbuf[1 : 1 + k1 - k0])
                    cash[k0:k1] = 1.0 - sw

            # Value every position at every point of the chunk under the incoming regime.
            g = gbuf[: p1 - p0]
            np.take(qbuf, pre[p0:p1] - (k0 - 1), axis=0, out=g, mode="clip")
            g *= x
            tc = g.sum(axis=1)
            tot[p0:p1] = tc
            if growth is None:
                inv_b = 1.0 / (cash[pre[p0:p1]] + tc)
            else:
                inv_b = 1.0 / (cash[pre[p0:p1]] * growth[p0:p1] + tc)
            np.multiply(g[1::2], inv_b[1::2, None], out=weights[d0:d1])

            if k1 > k0:
                if capping:
                    dW = dw_k[k0:k1]
                    adw = np.abs(dW)
                else:
                    dW = g[rows]
                    dW *= inv_b[rows, None]
                    np.subtract(W, dW, out=dW)  # target - drifted weights just before the trade
                    adw = np.abs(dW)
                    turn_k[k0:k1] = adw.sum(axis=1)
                hit = adw > TRADE_EPS
                m = int(np.count_nonzero(hit))
                sl = slice(n_tr, n_tr + m)
                if m == hit.size:  # every symbol trades: no index search needed
                    t_day[sl].reshape(k1 - k0, N)[:] = exe_day[k0:k1, None]
                    t_sym[sl].reshape(k1 - k0, N)[:] = sym_ids
                    t_dw[sl] = dW.ravel()
                    t_px[sl] = px.ravel()
                    np.multiply(adw.ravel(), rate, out=t_cost[sl])
                    if capping:
                        t_capped[sl] = capped_k[k0:k1].ravel()
                elif m:
                    flat = np.flatnonzero(hit)
                    per_exec = np.count_nonzero(hit, axis=1)
                    t_day[sl] = np.repeat(exe_day[k0:k1], per_exec)
                    np.subtract(flat, np.repeat(np.arange(0, (k1 - k0) * N, N), per_exec), out=t_sym[sl])
                    t_dw[sl] = dW.ravel()[flat]
                    t_px[sl] = px.ravel()[flat]
                    np.multiply(adw.ravel()[flat], rate, out=t_cost[sl])
                    if capping:
                        t_capped[sl] = capped_k[k0:k1].ravel()[flat]
                n_tr += m
                if at_close:
                    weights[exe_day[k0:k1]] = W
                qbuf[0] = qbuf[k1 - k0]

            np.maximum(g, 0.0, out=g)
            lpre[p0:p1] = g.sum(axis=1)  # exactly tc for a long-only book

    if not np.isfinite(tot).all():  # an infinite price (0 * inf = NaN) or an overflow
        raise ValueError("prices must be finite and > 0 where present (NaN = no bar)")
    spre = tot - lpre
    if growth is None:
        A = cash[pre] + tot  # pre-trade portfolio value relative to the last execution
    else:
        cpre = cash[pre] * growth  # cash balance, relative to the last execution
        A = cpre + tot
    # Post-trade values: at an execution point the book is reset to W with value 1.
    lpost, spost = lpre.copy(), spre.copy()
    lpost[exe_pt], spost[exe_pt], A[exe_pt] = wpos, wneg, 1.0

    # Step contributions p-1 -> p (step 0 is empty: nothing is held before the first close).
    lstep = np.zeros(npts)
    sstep = np.zeros(npts)
    if npts:
        np.divide(lpre[1:] - lpost[:-1], A[:-1], out=lstep[1:])
        np.divide(spre[1:] - spost[:-1], A[:-1], out=sstep[1:])
    l_on, s_on, l_in, s_in = lstep[0::2], sstep[0::2], lstep[1::2], sstep[1::2]
    if growth is None:
        g_on = 1.0 + l_on + s_on
        long_ret = l_on + g_on * l_in
        short_ret = s_on + g_on * s_in
        cash_ret = np.zeros(T)
        gross = long_ret + short_ret
    else:
        # Cash accrues on intraday steps only: the weight of cash after the open times the day's return.
        c_open = cpre[0::2].copy()  # cash balance after the open (relative to the last execution)
        if not at_close:
            c_open[exe_day] = cash[:K]  # post-trade, where A = 1
        c_open /= A[0::2]
        c_open *= cash_return
        g_on = 1.0 + l_on + s_on
        long_ret = l_on + g_on * l_in
        short_ret = s_on + g_on * s_in
        cash_ret = g_on * c_open
        gross = long_ret + short_ret + cash_ret

    turnover = np.zeros(T)
    turnover[exe_day] = turn_k
    cost_frac = np.zeros(T)
    cost_frac[exe_day] = turn_k * rate

    def _used(a: np.ndarray) -> np.ndarray:  # drop the unused capacity (copy when mostly unused)
        return a[:n_tr].copy() if 2 * n_tr < cap else a[:n_tr]

    cost = (1.0 + gross) * cost_frac  # exactly 0 on days without an execution
    net = gross - cost
    capped_trades = np.zeros(T, dtype=np.int64)
    if capping:
        capped_trades[exe_day] = np.count_nonzero(capped_k, axis=1)
        trade_capped = _used(t_capped)
    else:
        trade_capped = np.zeros(n_tr, dtype=bool)

    return BacktestResult(
        gross=gross,
        cost=cost,
        net=net,
        long_ret=long_ret,
        short_ret=short_ret,
        turnover=turnover,
        gross_exposure=(lpost[1::2] - spost[1::2]) / A[1::2],
        net_exposure=(lpost[1::2] + spost[1::2]) / A[1::2],
        trade_day=_used(t_day),
        trade_symbol=_used(t_sym),
        trade_dw=_used(t_dw),
        trade_price=_used(t_px),
        trade_cost=_used(t_cost),
        weights=weights,
        cash_ret=cash_ret,
        capped_trades=capped_trades,
        trade_capped=trade_capped,
    )
