"""Capital allocation among a world's live strategies, its risk engine and its own track (pure numpy/polars).

Every session t of a range, in date order (the state of t-1 feeds t, so a range gives exactly the rows of
its days run one by one):

1. **Track** (next-bar): the allocation decided at the close of t-1 earns the strategies' net returns of
   t (a missing return counts as 0); equity compounds from 1; drawdown = 1 - equity / running peak.
2. **Risk engine, state**: the drawdown circuit breaker trips when the drawdown exceeds `max_dd`; it is
   released once `cooldown` sessions have passed since the trip AND the drawdown is back at or under
   `resume_below` (default max_dd / 2). A session return at or below -`daily_loss.limit` trips the daily
   loss limit for the allocation decided at that close.
3. **Allocation** among the strategies `live` that day and not rejected by the supervisor:
   raw weights by `method` — `equal`; `inverse_vol` (1 / annual volatility over `vol_window`; a missing
   or non-positive volatility takes the median of the others, none at all: equal); `score` (the positive
   part of the world score: a negative score gets 0, never a negative weight; all non-positive: equal);
   `risk_parity` (equal risk contributions from the covariance of the strategies' returns over
   `risk_parity.window`, shrunk by Ledoit-Wolf or a constant, `quantlab.world.risk_parity`; a singular
   covariance falls back to equal weights, recorded) — normalized to 1 and capped at `max_weight` (the
   excess stays in cash, or with `full_investment` goes to the uncapped strategies; a budget that cannot
   be met, max_weight x live count < 1, leaves each at the cap, recorded); each side's sum scaled down to
   its `gross_budget`; then `smoothing` s blends with the previous allocation, w = s w_prev + (1 - s) w
   (strategies no longer live drop to 0 at once). With no live strategy the world holds cash (recorded).
   On an evaluate-only day (stale data) the previous allocation is kept.
4. **Limits on the world book** (the strategies' approved targets times their weights, netted per
   symbol): `max_gross` (sum |w|), `max_net` (|sum w|) and `risk.exposure.max_symbol` scale every
   strategy's weight down by the same factor; then, while the circuit breaker is on, the capital deployed
   (sum of the weights) is capped at `cut_to`, and after a daily loss at `daily_loss.cut_to`.
Every trigger is one `world_risk_events` row (event, value, limit, reason).
"""

from __future__ import annotations

import datetime as dt
import warnings
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from quantlab.calendar import session_index, sessions, shift_sessions
from quantlab.codes import ranges, run_codes, run_starts
from quantlab.parallel import start
from quantlab.world.risk_parity import erc_weights, ledoit_wolf, shrunk
from quantlab.world.spec import SIDES, WorldSpec, days

_EPS = 1e-12

EVENT_SCHEMA = {
    "world": pl.String,
    "date": pl.Date,
    "event": pl.String,
    "value": pl.Float64,
    "limit": pl.Float64,
    "reason": pl.String,
}


# measures of the world book on its last axis (symbols)
_BOOK_MEASURES = {
    "max_gross": lambda book: np.abs(book).sum(axis=-1),
    "max_net": lambda book: np.abs(book.sum(axis=-1)),
    "max_symbol": lambda book: np.abs(book).max(axis=-1),
}


@dataclass(frozen=True)
class WorldState:
    """A world at the close of the session before a range: its allocation rows (strategy -> weight), its
    equity and running peak, the gross/net exposure of its target book and when its circuit tripped."""

    weights: dict[str, float] = field(default_factory=dict)
    equity: float = 1.0
    peak: float = 1.0
    gross: float = 0.0
    net: float = 0.0
    circuit_since: dt.date | None = None


def state_from_rows(
    allocations: pl.DataFrame, targets: pl.DataFrame, last_return: dict | None, peak: float
) -> WorldState:
    """The state after a stored session: its `world_allocations` and `world_targets` rows, its
    `world_returns` row (None: a new world) and the highest equity so far."""
    if last_return is None:
        return WorldState()
    gross, net = book_exposure(targets.sort("symbol").get_column("weight").to_numpy())
    return WorldState(
        weights=dict(zip(allocations.get_column("strategy"), allocations.get_column("weight"), strict=True)),
        equity=last_return["equity"],
        peak=max(1.0, peak),
        gross=gross,
        net=net,
        circuit_since=last_return["circuit_since"] if last_return["circuit"] else None,
    )


@dataclass(frozen=True)
class WorldRun:
    allocations: pl.DataFrame
    targets: pl.DataFrame
    returns: pl.DataFrame
    events: pl.DataFrame


def history_start(world: WorldSpec, start: dt.date) -> dt.date:
    """First session of strategy returns the allocation of [start, ...] reads (risk parity's window)."""
    if world.allocation.method != "risk_parity":
        return start
    return shift_sessions(start, -days(world.allocation.risk_parity.window))


def _positions(df: pl.DataFrame, rows: list[dt.date], members: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Row (session in `rows`, ascending) and column (member) index of each row of `df`; -1 where outside
    them (dates are looked up in a table over the rows' span)."""
    if not rows:
        return np.full(df.height, -1), np.full(df.height, -1)
    days_int = np.array([d.toordinal() for d in rows], dtype=np.int64) - dt.date(1970, 1, 1).toordinal()
    table = np.full(days_int[-1] - days_int[0] + 3, -1)  # -1 at both ends: out of range clips to them
    table[days_int - days_int[0] + 1] = np.arange(len(rows))
    at = df.get_column("date").cast(pl.Int32).to_numpy().astype(np.int64) - (days_int[0] - 1)
    return np.take(table, at, mode="clip"), run_codes(df.get_column("strategy"), members)[0]


def _book_runs(
    books: pl.DataFrame, rows: list[dt.date], members: list[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The runs of rows of one (date, strategy) of `books`: their first row, one past their last, and
    their session and member index (-1 outside `rows` / `members`)."""
    date = books.get_column("date").cast(pl.Int32).to_numpy()
    heads = run_starts(date, books.get_column("strategy").rle_id().to_numpy())
    k, s = _positions(books.select("date", "strategy")[heads], rows, members)
    return heads, np.r_[heads[1:], books.height], k, s


def _world_books(
    books: pl.DataFrame, runs: tuple[np.ndarray, ...], ok: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """The rows of `books` with a non-zero `approved_weight` in the runs (`_book_runs`) whose (session,
    member) is `ok` (sessions x members): session, member and symbol index and weight of each, sorted by
    (session, member, symbol), and the symbols."""
    heads, ends, k, s = runs
    on = (k >= 0) & (s >= 0)
    on[on] = ok[k[on], s[on]]
    g = np.flatnonzero(on)
    at = ranges(heads[g], ends[g])
    head = np.repeat(g, ends[g] - heads[g])
    b_w = books.get_column("approved_weight").to_numpy()[at]
    held = b_w != 0
    at, head, b_w = at[held], head[held], b_w[held]
    b_k, b_s = k[head], s[head]
    bk_symbols = books.get_column("symbol").gather(at)
    symbols = sorted(bk_symbols.unique().to_list())
    b_n = bk_symbols.cast(pl.Enum(symbols)).to_physical().cast(pl.Int64).to_numpy()
    key = (b_k * ok.shape[1] + b_s) * max(len(symbols), 1) + b_n
    if len(key) and (np.diff(key) < 0).any():  # the supervisor writes them sorted; a warehouse read may not
        order = np.argsort(key, kind="stable")
        b_k, b_s, b_n, b_w = b_k[order], b_s[order], b_n[order], b_w[order]
    return b_k, b_s, b_n, b_w, symbols


def _matrix(df: pl.DataFrame, col: str, rows: list[dt.date], members: list[str], fill: float) -> np.ndarray:
    out = np.full((len(rows), len(members)), fill, dtype=np.float64)
    if df.height == 0:
        return out
    r, c = _positions(df, rows, members)
    ok = (r >= 0) & (c >= 0)
    out[r[ok], c[ok]] = df.get_column(col).cast(pl.Float64).fill_null(fill).to_numpy()[ok]
    return out


def book_exposures(weights: np.ndarray, bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gross (sum |w|) and net (sum w) exposure of each world book `weights[bounds[i]:bounds[i + 1]]`
    (its non-zero weights in symbol order), summed left to right."""
    lo, hi = bounds[:-1], bounds[1:]
    if not len(lo):
        return np.zeros(0), np.zeros(0)
    padded = np.append(weights, 0.0)  # an empty book at the end starts at the padding
    at = np.minimum(bounds, len(weights))  # the last bound only ends the last book
    gross = np.where(hi > lo, np.add.reduceat(np.abs(padded), at)[:-1], 0.0)
    return gross, np.where(hi > lo, np.add.reduceat(padded, at)[:-1], 0.0)


def book_exposure(weights: np.ndarray) -> tuple[float, float]:
    """Gross and net exposure of one world book given its non-zero weights in symbol order."""
    gross, net = book_exposures(weights, np.array([0, len(weights)]))
    return float(gross[0]), float(net[0])


def capped_weights(
    raw: np.ndarray, live: np.ndarray, cap: float, full: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of `raw` (sessions x strategies, 0 off `live`) normalized to 1 and capped at `cap`; with
    `full`, what the cap cuts goes to the uncapped weights in proportion (water-filling). Returns the
    weights and, per row, whether full investment was unmeetable (cap x live count < 1: all at the cap)."""
    total = raw.sum(axis=1, keepdims=True)
    w = np.where(total > 0, raw / np.where(total > 0, total, 1.0), 0.0)
    unmet = np.zeros(len(w), dtype=bool)
    if not full:
        return np.minimum(w, cap), unmet
    n_live = live.sum(axis=1)
    unmet = (n_live > 0) & (cap * n_live < 1 - _EPS)
    w[unmet] = np.where(live[unmet], cap, 0.0)
    fixed = np.zeros(w.shape, dtype=bool)
    for _ in range(w.shape[1]):
        over = ~fixed & (w > cap + _EPS) & ~unmet[:, None]
        if not over.any():
            break
        fixed |= over
        w[fixed] = cap
        free = live & ~fixed
        rest = 1.0 - cap * fixed.sum(axis=1)
        mass = np.where(free, w, 0.0).sum(axis=1)
        scale = np.where(mass > 0, rest / np.where(mass > 0, mass, 1.0), 1.0)
        w = np.where(free & ~unmet[:, None], w * scale[:, None], w)
    return w, unmet


def _raw_weights(
    world: WorldSpec,
    live: np.ndarray,
    score: np.ndarray | None,
    vols: np.ndarray | None,
    rp: np.ndarray | None,
) -> np.ndarray:
    """Each session's raw weights of its live strategies by the world's method (0 elsewhere); `score`,
    `vols` and `rp` are given for the method that uses them."""
    method = world.allocation.method
    ones = live.astype(np.float64)
    if method == "inverse_vol" and vols is not None:
        ok = live & np.isfinite(vols) & (vols > 0)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: no volatility at all
            med = np.nanmedian(np.where(ok, vols, np.nan), axis=1)
            raw = np.where(live, 1.0 / np.where(ok, vols, med[:, None]), 0.0)
        return np.where(ok.any(axis=1)[:, None], raw, ones)
    if method == "score" and score is not None:
        pos = np.where(live & np.isfinite(score), np.maximum(score, 0.0), 0.0)
        return np.where((pos.sum(axis=1) > 0)[:, None], pos, ones)
    if method == "risk_parity" and rp is not None:
        solved = (live.sum(axis=1) > 1) & np.isfinite(rp).any(axis=1)
        return np.where(solved[:, None], np.nan_to_num(rp), ones)
    return ones


def _risk_parity(
    world: WorldSpec,
    ret_m: np.ndarray,
    off: int,
    live_ok: np.ndarray,
    frozen_on: set[dt.date],
    days_: list[dt.date],
) -> np.ndarray:
    """Risk-parity weights (T, M) of each session's live strategies (NaN where the covariance is
    singular), solved in one batch per number of live strategies; they depend on no state."""
    rp = world.allocation.risk_parity
    window = days(rp.window)
    out = np.full(live_ok.shape, np.nan)
    n_live = live_ok.sum(axis=1)
    todo = np.array([d not in frozen_on for d in days_]) & (n_live > 1)
    for p in np.unique(n_live[todo]):
        ks = np.flatnonzero(todo & (n_live == p))
        ids = np.nonzero(live_ok[ks])[1].reshape(len(ks), p)  # each session's live strategies, in order
        span = (off + ks)[:, None] + np.arange(1 - window, 1)[None, :]
        x = ret_m[span[:, :, None], ids[:, None, :]]
        cov = ledoit_wolf(x) if rp.shrinkage == "ledoit_wolf" else shrunk(x, float(rp.shrinkage))
        w, _ = erc_weights(cov)
        out[ks[:, None], ids] = w
    return out


def allocate_world(
    world: WorldSpec,
    members: list[str],
    sides: list[str],
    days_: list[dt.date],
    decisions: pl.DataFrame,
    vol: pl.DataFrame,
    returns: pl.DataFrame,
    books: pl.DataFrame,
    rejected: pl.DataFrame,
    state: WorldState,
) -> WorldRun:
    """Allocation, world target book, track and risk events for `days_` (consecutive sessions).

    `decisions`: (date, strategy, stage, score, evaluate_only); `vol`: (date, strategy, vol), the annual
    volatility `inverse_vol` uses; `returns`: (date, strategy, net) from `history_start` on; `books`:
    (date, strategy, symbol, approved_weight); `rejected`: (date, strategy) pairs the supervisor rejected;
    `state`: the world at the close of the session before `days_[0]`. What depends on no state (the
    method's weights, the caps and side budgets) is computed for all sessions at once; the loop carries
    only the stateful steps (smoothing, limits on the book, the risk engine, the track).
    """
    alloc, risk = world.allocation, world.risk
    n_t, n_m = len(days_), len(members)
    runs = start(lambda: _book_runs(books, days_, members))  # the books, read while the rest is set up
    hist = sessions(history_start(world, days_[0]), days_[-1])
    off = len(hist) - n_t
    ret_m = np.nan_to_num(_matrix(returns, "net", hist, members, np.nan), nan=0.0)
    live = _matrix(
        decisions.with_columns(v=(pl.col("stage") == "live").cast(pl.Float64)), "v", days_, members, 0.0
    )
    rej = _matrix(rejected.with_columns(v=pl.lit(1.0)), "v", days_, members, 0.0)
    live_ok = (live > 0) & (rej == 0)
    per_day = decisions.group_by("date").agg(pl.col("evaluate_only").any())
    frozen_on = set(per_day.filter("evaluate_only").get_column("date").to_list())
    decided = set(per_day.get_column("date").to_list())
    frozen = np.array([d in frozen_on for d in days_], dtype=bool)
    sidx = session_index(days_)
    events: list[tuple] = []

    # the approved books (rows sorted by session, strategy, symbol), read while the weights are computed:
    # only the books that can get capital: live (and not rejected) that day, or any on an evaluate-only day
    book_runs = runs.result()
    world_books = start(lambda: _world_books(books, book_runs, live_ok | frozen[:, None]))

    # state-independent, every session at once: the method's weights, capped, within the side budgets
    method = alloc.method
    rp = _risk_parity(world, ret_m, off, live_ok, frozen_on, days_) if method == "risk_parity" else None
    raw = _raw_weights(
        world,
        live_ok,
        _matrix(decisions, "score", days_, members, np.nan) if method == "score" else None,
        _matrix(vol, "vol", days_, members, np.nan) if method == "inverse_vol" else None,
        rp,
    )
    target, unmet = capped_weights(raw, live_ok, alloc.max_weight, alloc.full_investment)
    side_code = np.array([SIDES.index(s) for s in sides], dtype=np.int64)
    for code, side in enumerate(SIDES):
        cols = side_code == code
        budget = alloc.gross_budget.get(side, 1.0)  # type: ignore[call-overload]
        total = target[:, cols].sum(axis=1)
        factor = np.where(total > budget + _EPS, budget / np.where(total > 0, total, 1.0), 1.0)
        target[:, cols] *= factor[:, None]
    n_live = live_ok.sum(axis=1)
    window = days(alloc.risk_parity.window)
    singular = (
        (n_live > 1) & ~(np.isfinite(rp) | ~live_ok).all(axis=1)
        if rp is not None
        else np.zeros(n_t, dtype=bool)
    )
    for k in np.flatnonzero(~frozen & ((n_live == 0) | singular | unmet)):
        day, n = days_[k], int(n_live[k])
        if n == 0:
            why = "no live strategy" if day in decided else "no decision for this session"
            events.append((day, "no_live", None, None, f"{why}: the world holds cash"))
        elif singular[k]:
            why = f"covariance of {n} strategies over {window} sessions is singular: equal weights"
            events.append((day, "singular_covariance", None, None, why))
        if unmet[k]:
            deployed = alloc.max_weight * n
            why = (
                f"full investment needs max_weight x live >= 1: {alloc.max_weight:g} x {n} = {deployed:.2f}; "
                "the rest is cash"
            )
            events.append((day, "budget_unmet", deployed, 1.0, why))
    smooth = alloc.smoothing
    keep_prev = smooth * live_ok  # smoothing: s w_prev + (1 - s) w_new, for the strategies still live
    fresh = (1.0 - smooth) * target

    b_k, b_s, b_n, b_w, symbols = world_books.result()
    n_n = max(len(symbols), 1)
    b_ptr = np.searchsorted(b_k, np.arange(n_t + 1))
    max_symbol = risk.exposure.max_symbol if risk.exposure else None
    book_limits = [
        (name, lim, _BOOK_MEASURES[name])
        for name, lim in (
            ("max_gross", alloc.max_gross),
            ("max_net", alloc.max_net),
            ("max_symbol", max_symbol),
        )
        if lim is not None
    ]
    measured = None  # without smoothing, a session's allocation is its target: its book measured at once
    if book_limits and not smooth:
        books_all = np.bincount(b_k * n_n + b_n, weights=target[b_k, b_s] * b_w, minlength=n_t * n_n)
        measured = np.column_stack([f(books_all.reshape(n_t, n_n)) for _, _, f in book_limits])

    dc, dl = risk.drawdown_circuit, risk.daily_loss
    cooldown = days(dc.cooldown) if dc else 0
    start_w = np.array([state.weights.get(m, 0.0) for m in members])
    held, prev_rows = start_w, np.array([m in state.weights for m in members])
    equity, peak = state.equity, state.peak
    since = state.circuit_since
    since_idx = int(session_index([since])[0]) if since is not None else 0
    weights = np.zeros((n_t, n_m))
    rowmask = np.zeros((n_t, n_m), dtype=bool)
    rets, equities, drawdowns = [0.0] * n_t, [0.0] * n_t, [0.0] * n_t
    circuit: list[dt.date | None] = [None] * n_t
    # per session as Python values: the loop reads one at a time
    session, frozen_k = sidx.tolist(), frozen.tolist()
    measured_k = measured.tolist() if measured is not None else None
    ret_k = ret_m[off:]
    for k in range(n_t):
        day = days_[k]
        # 1. the session's return on the allocation decided the session before
        ret = float(held @ ret_k[k])
        equity *= 1.0 + ret
        peak = max(peak, equity)
        dd = max(0.0, 1.0 - equity / peak)
        rets[k], equities[k], drawdowns[k] = ret, equity, dd
        # 2. risk engine state
        cap = np.inf
        if dc is not None:
            if since is None and dd > dc.max_dd + _EPS:
                since, since_idx = day, session[k]
                why = f"drawdown {dd:.2%} > {dc.max_dd:.2%}: capital capped at {dc.cut_to:.0%} for at least {cooldown} sessions"
                events.append((day, "circuit_trip", dd, dc.max_dd, why))
            elif since is not None and session[k] - since_idx >= cooldown and dd <= dc.resume + _EPS:
                why = (
                    f"drawdown {dd:.2%} <= {dc.resume:.2%} after {session[k] - since_idx} sessions "
                    f"(cooldown {cooldown}): limits lifted"
                )
                events.append((day, "circuit_release", dd, dc.resume, why))
                since = None
            if since is not None:
                cap = dc.cut_to
        circuit[k] = since
        if dl is not None and ret <= -dl.limit + _EPS:
            cap = min(cap, dl.cut_to)
            why = f"session return {ret:.2%} <= -{dl.limit:.2%}: capital capped at {dl.cut_to:.0%} for the next session"
            events.append((day, "daily_loss", ret, -dl.limit, why))
        # 3. the allocation (evaluate-only: the previous one), smoothed with the previous
        if frozen_k[k]:
            a, rows_k = held, prev_rows
        else:
            a, rows_k = (held * keep_prev[k] + fresh[k]) if smooth else target[k], live_ok[k]
        # 4. limits on the world book, then the capital caps
        factor = 1.0
        if book_limits:
            if measured_k is None or frozen_k[k]:
                r = slice(b_ptr[k], b_ptr[k + 1])
                book = np.bincount(b_n[r], weights=a[b_s[r]] * b_w[r], minlength=n_n)
                values = [float(f(book)) for _, _, f in book_limits]
            else:
                values = measured_k[k]
            for (name, lim, _), value in zip(book_limits, values, strict=True):
                if value > lim + _EPS:
                    factor = min(factor, lim / value)
                    why = f"world book {name[4:]} {value:.4f} > {lim:g}: every strategy weight scaled by {lim / value:.4f}"
                    events.append((day, name, value, lim, why))
        capital = float(a.sum()) * factor
        if capital > cap + _EPS:
            factor *= cap / capital
            if since is not None:
                why = f"circuit breaker on since {since}: capital {capital:.4f} capped at {cap:g}"
                events.append((day, "circuit_cap", capital, cap, why))
        if factor != 1.0:
            a = a * factor
        weights[k], rowmask[k] = a, rows_k
        held, prev_rows = a, rows_k

    # the world book from the final weights, netted per symbol (contributions summed in strategy order)
    held_rows = np.flatnonzero(weights[b_k, b_s] != 0)
    b_k, b_s, b_n, b_w = b_k[held_rows], b_s[held_rows], b_n[held_rows], b_w[held_rows]
    book_w = np.bincount(b_k * n_n + b_n, weights=weights[b_k, b_s] * b_w, minlength=n_t * n_n)
    t_at = np.flatnonzero(np.abs(book_w) > _EPS)  # (session, symbol) ascending
    t_k, t_n, t_w = t_at // n_n, t_at % n_n, book_w[t_at]
    gross, net = book_exposures(t_w, np.searchsorted(t_k, np.arange(n_t)))  # the sessions but the last
    prev_w = np.vstack([start_w[None, :], weights[:-1]])
    a_k, a_m = np.nonzero(rowmask)
    day_series = pl.Series(days_, dtype=pl.Date)
    events.sort(key=lambda e: e[0])
    return WorldRun(
        allocations=pl.DataFrame(
            {
                "world": pl.Series([world.id] * len(a_k), dtype=pl.String),
                "date": day_series.gather(a_k),
                "strategy": pl.Series(members, dtype=pl.String).gather(a_m),
                "side": pl.Series(sides, dtype=pl.String).gather(a_m),
                "weight": weights[a_k, a_m],
            }
        ),
        targets=pl.DataFrame(
            {
                "world": pl.Series([world.id] * len(t_k), dtype=pl.String),
                "date": day_series.gather(t_k),
                "symbol": pl.Series(symbols or [""], dtype=pl.String).gather(t_n),
                "weight": pl.Series(t_w, dtype=pl.Float64),  # bincount of nothing is int64
            }
        ),
        returns=pl.DataFrame(
            {
                "world": pl.Series([world.id] * n_t, dtype=pl.String),
                "date": day_series,
                "ret": rets,
                "equity": equities,
                "drawdown": drawdowns,
                "exposure": prev_w.sum(axis=1),
                "gross_exposure": np.r_[state.gross, gross],
                "net_exposure": np.r_[state.net, net],
                "n_live": (prev_w > 0).sum(axis=1).astype(np.int64),
                "circuit": pl.Series([c is not None for c in circuit], dtype=pl.Boolean),
                "circuit_since": pl.Series(circuit, dtype=pl.Date),
            }
        ),
        events=pl.DataFrame([(world.id, *e) for e in events], schema=EVENT_SCHEMA, orient="row"),
    )
