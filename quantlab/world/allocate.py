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
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from quantlab.calendar import session_index, sessions, shift_sessions
from quantlab.world.risk_parity import erc_weights, ledoit_wolf, shrunk
from quantlab.world.spec import SIDES, WorldSpec, days

_EPS = 1e-12

ALLOCATION_SCHEMA = {
    "world": pl.String,
    "date": pl.Date,
    "strategy": pl.String,
    "side": pl.String,
    "weight": pl.Float64,
}
TARGET_SCHEMA = {"world": pl.String, "date": pl.Date, "symbol": pl.String, "weight": pl.Float64}
EVENT_SCHEMA = {
    "world": pl.String,
    "date": pl.Date,
    "event": pl.String,
    "value": pl.Float64,
    "limit": pl.Float64,
    "reason": pl.String,
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
    """Row (session in `rows`) and column (member) index of each row of `df`; -1 where outside them."""
    days_int = np.array([d.toordinal() for d in rows], dtype=np.int64) - dt.date(1970, 1, 1).toordinal()
    dates = df.get_column("date").cast(pl.Int32).to_numpy().astype(np.int64)
    r = np.searchsorted(days_int, dates)
    r = np.where((r < len(days_int)) & (days_int[np.minimum(r, len(days_int) - 1)] == dates), r, -1)
    c = (
        df.select(
            pl.col("strategy").cast(pl.Enum(members), strict=False).to_physical().cast(pl.Int64).fill_null(-1)
        )
        .to_series()
        .to_numpy()
    )
    return r, c


def _matrix(df: pl.DataFrame, col: str, rows: list[dt.date], members: list[str], fill: float) -> np.ndarray:
    out = np.full((len(rows), len(members)), fill, dtype=np.float64)
    if df.height == 0:
        return out
    r, c = _positions(df, rows, members)
    ok = (r >= 0) & (c >= 0)
    out[r[ok], c[ok]] = df.get_column(col).cast(pl.Float64).fill_null(fill).to_numpy()[ok]
    return out


def book_exposure(weights: np.ndarray) -> tuple[float, float]:
    """Gross and net exposure of a world book given its non-zero weights in symbol order."""
    return float(np.abs(weights).sum()), float(weights.sum())


def capped_weights(raw: np.ndarray, cap: float, full: bool) -> tuple[np.ndarray, bool]:
    """`raw` normalized to 1 and capped at `cap`; with `full`, what the cap cuts goes to the uncapped
    weights in proportion (water-filling). Returns the weights and whether full investment was unmeetable."""
    w = raw / raw.sum()
    if not full:
        return np.minimum(w, cap), False
    if cap * len(w) < 1 - _EPS:
        return np.full(len(w), cap), True
    fixed = np.zeros(len(w), dtype=bool)
    while True:
        over = ~fixed & (w > cap + _EPS)
        if not over.any():
            return w, False
        fixed |= over
        w[fixed] = cap
        free = ~fixed
        w[free] *= (1.0 - cap * fixed.sum()) / w[free].sum()


def _risk_parity(
    world: WorldSpec,
    ret_m: np.ndarray,
    off: int,
    live_ok: np.ndarray,
    frozen_on: set[dt.date],
    days_: list[dt.date],
) -> np.ndarray:
    """Risk-parity weights (T, M) of each session's live strategies (NaN where the covariance is
    singular), solved in one batch per distinct live set; they depend on no state."""
    rp = world.allocation.risk_parity
    window = days(rp.window)
    out = np.full(live_ok.shape, np.nan)
    todo = np.array([d not in frozen_on for d in days_]) & (live_ok.sum(axis=1) > 1)
    sets, inverse = np.unique(live_ok[todo], axis=0, return_inverse=True)
    rows = np.flatnonzero(todo)
    for j, mask in enumerate(sets):
        ks = rows[inverse.ravel() == j]
        ids = np.flatnonzero(mask)
        span = (off + ks)[:, None] + np.arange(1 - window, 1)[None, :]
        x = ret_m[span][:, :, ids]
        cov = ledoit_wolf(x) if rp.shrinkage == "ledoit_wolf" else shrunk(x, float(rp.shrinkage))
        w, _ = erc_weights(cov)
        out[np.ix_(ks, ids)] = w
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
    `state`: the world at the close of the session before `days_[0]`.
    """
    alloc, risk = world.allocation, world.risk
    n_t, n_m = len(days_), len(members)
    hist = sessions(history_start(world, days_[0]), days_[-1])
    off = len(hist) - n_t
    ret_m = np.nan_to_num(_matrix(returns, "net", hist, members, np.nan), nan=0.0)
    live = _matrix(
        decisions.with_columns(v=(pl.col("stage") == "live").cast(pl.Float64)), "v", days_, members, 0.0
    )
    rej = _matrix(rejected.with_columns(v=pl.lit(1.0)), "v", days_, members, 0.0)
    live_ok = (live > 0) & (rej == 0)
    score = _matrix(decisions, "score", days_, members, np.nan)
    vols = _matrix(vol, "vol", days_, members, np.nan)
    per_day = decisions.group_by("date").agg(pl.col("evaluate_only").any())
    frozen_on = set(per_day.filter("evaluate_only").get_column("date").to_list())
    decided = set(per_day.get_column("date").to_list())
    side_code = np.array([SIDES.index(s) for s in sides], dtype=np.int64)
    budget = [alloc.gross_budget.get(s, 1.0) for s in SIDES]  # type: ignore[call-overload]
    sidx = session_index(days_)

    bk = books.filter(pl.col("approved_weight") != 0)
    symbols = sorted(bk.get_column("symbol").unique().to_list())
    n_n = len(symbols)
    b_k, b_s = _positions(bk, days_, members)
    b_n = bk.get_column("symbol").cast(pl.Enum(symbols)).to_physical().cast(pl.Int64).to_numpy()
    b_w = bk.get_column("approved_weight").to_numpy()
    inside = np.flatnonzero((b_k >= 0) & (b_s >= 0))
    order = inside[np.argsort((b_k[inside] * n_m + b_s[inside]) * max(n_n, 1) + b_n[inside], kind="stable")]
    b_k, b_s, b_n, b_w = b_k[order], b_s[order], b_n[order], b_w[order]
    b_ptr = np.searchsorted(b_k, np.arange(n_t + 1))

    dc, dl = risk.drawdown_circuit, risk.daily_loss
    cooldown = days(dc.cooldown) if dc else 0
    window = days(alloc.risk_parity.window)

    held = np.array([state.weights.get(m, 0.0) for m in members])
    rowmask = np.array([m in state.weights for m in members])
    equity, peak, gross, net = state.equity, state.peak, state.gross, state.net
    since = state.circuit_since
    since_idx = int(session_index([since])[0]) if since is not None else 0
    rp_raw = (
        _risk_parity(world, ret_m, off, live_ok, frozen_on, days_) if alloc.method == "risk_parity" else None
    )
    out_a: list[tuple[int, np.ndarray, np.ndarray]] = []
    out_t: list[tuple[int, np.ndarray, np.ndarray]] = []
    track: list[tuple] = []
    events: list[tuple] = []
    for k, day in enumerate(days_):
        # 1. the session's return on the allocation decided the session before
        ret = float(held @ ret_m[off + k])
        equity *= 1.0 + ret
        peak = max(peak, equity)
        dd = max(0.0, 1.0 - equity / peak)
        n_held = int((held > 0).sum())
        track.append((day, ret, equity, dd, float(held.sum()), gross, net, n_held))
        # 2. risk engine state
        cap = np.inf
        if dc is not None:
            if since is None and dd > dc.max_dd + _EPS:
                since, since_idx = day, int(sidx[k])
                events.append(
                    (
                        day,
                        "circuit_trip",
                        dd,
                        dc.max_dd,
                        f"drawdown {dd:.2%} > {dc.max_dd:.2%}: "
                        f"capital capped at {dc.cut_to:.0%} for at least {cooldown} sessions",
                    )
                )
            elif since is not None and sidx[k] - since_idx >= cooldown and dd <= dc.resume + _EPS:
                events.append(
                    (
                        day,
                        "circuit_release",
                        dd,
                        dc.resume,
                        f"drawdown {dd:.2%} <= {dc.resume:.2%} "
                        f"after {int(sidx[k] - since_idx)} sessions (cooldown {cooldown}): limits lifted",
                    )
                )
                since = None
            if since is not None:
                cap = dc.cut_to
        track[-1] = (*track[-1], since is not None, since)
        if dl is not None and ret <= -dl.limit + _EPS:
            cap = min(cap, dl.cut_to)
            events.append(
                (
                    day,
                    "daily_loss",
                    ret,
                    -dl.limit,
                    f"session return {ret:.2%} <= -{dl.limit:.2%}: "
                    f"capital capped at {dl.cut_to:.0%} for the next session",
                )
            )
        # 3. allocation
        if day in frozen_on:
            a = held.copy()
        else:
            a = np.zeros(n_m)
            rowmask = live_ok[k].copy()
            ids = np.flatnonzero(rowmask)
            if ids.size == 0:
                why = "no live strategy" if day in decided else "no decision for this session"
                events.append((day, "no_live", None, None, f"{why}: the world holds cash"))
            else:
                raw = np.ones(ids.size)
                if alloc.method == "inverse_vol":
                    v = vols[k, ids]
                    ok = np.isfinite(v) & (v > 0)
                    if ok.any():
                        raw = 1.0 / np.where(ok, v, np.median(v[ok]))
                elif alloc.method == "score":
                    sc = score[k, ids]
                    pos = np.where(np.isfinite(sc), np.maximum(sc, 0.0), 0.0)
                    if pos.sum() > 0:
                        raw = pos
                elif alloc.method == "risk_parity" and ids.size > 1:
                    if np.isfinite(rp_raw[k, ids]).all():
                        raw = rp_raw[k, ids]
                    else:
                        events.append(
                            (
                                day,
                                "singular_covariance",
                                None,
                                None,
                                f"covariance of {ids.size} strategies over {window} sessions is singular: "
                                "equal weights",
                            )
                        )
                w, unmet = capped_weights(raw, alloc.max_weight, alloc.full_investment)
                if unmet:
                    events.append(
                        (
                            day,
                            "budget_unmet",
                            float(w.sum()),
                            1.0,
                            f"full investment needs max_weight x live >= 1: {alloc.max_weight:g} x "
                            f"{ids.size} = {w.sum():.2f}; the rest is cash",
                        )
                    )
                codes = side_code[ids]
                for code in range(len(SIDES)):
                    m = codes == code
                    total = w[m].sum()
                    if total > budget[code] + _EPS:
                        w[m] *= budget[code] / total
                if alloc.smoothing:
                    w = alloc.smoothing * held[ids] + (1.0 - alloc.smoothing) * w
                a[ids] = w
        # 4. limits on the world book, then the capital caps
        rows = slice(b_ptr[k], b_ptr[k + 1])
        book = np.bincount(b_n[rows], weights=a[b_s[rows]] * b_w[rows], minlength=n_n)
        factor = 1.0
        g, nt = float(np.abs(book).sum()), float(book.sum())
        mx = float(np.abs(book).max()) if n_n else 0.0
        for name, value, limit in (
            ("max_gross", g, alloc.max_gross),
            ("max_net", abs(nt), alloc.max_net),
            ("max_symbol", mx, risk.exposure.max_symbol if risk.exposure else None),
        ):
            if limit is not None and value > limit + _EPS:
                factor = min(factor, limit / value)
                events.append(
                    (
                        day,
                        name,
                        value,
                        limit,
                        f"world book {name[4:]} {value:.4f} > {limit:g}: "
                        f"every strategy weight scaled by {limit / value:.4f}",
                    )
                )
        capital = float(a.sum()) * factor
        if capital > cap + _EPS:
            factor *= cap / capital
            if since is not None:
                events.append(
                    (
                        day,
                        "circuit_cap",
                        capital,
                        cap,
                        f"circuit breaker on since {since}: capital {capital:.4f} capped at {cap:g}",
                    )
                )
        if factor != 1.0:
            a *= factor
            book *= factor
        nz = np.flatnonzero(np.abs(book) > _EPS)
        out_t.append((k, nz, book[nz]))
        gross, net = book_exposure(book[nz])
        keep = np.flatnonzero(rowmask)
        out_a.append((k, keep, a[keep]))
        held = a
    return WorldRun(
        allocations=_rows(world.id, days_, out_a, members, ALLOCATION_SCHEMA, "strategy")
        .with_columns(side=pl.col("strategy").replace_strict(members, sides, return_dtype=pl.String))
        .select(list(ALLOCATION_SCHEMA)),
        targets=_rows(world.id, days_, out_t, symbols, TARGET_SCHEMA, "symbol"),
        returns=pl.DataFrame(
            track,
            schema={
                "date": pl.Date,
                "ret": pl.Float64,
                "equity": pl.Float64,
                "drawdown": pl.Float64,
                "exposure": pl.Float64,
                "gross_exposure": pl.Float64,
                "net_exposure": pl.Float64,
                "n_live": pl.Int64,
                "circuit": pl.Boolean,
                "circuit_since": pl.Date,
            },
            orient="row",
        ).select(pl.lit(world.id).alias("world"), pl.all()),
        events=pl.DataFrame([(world.id, *e) for e in events], schema=EVENT_SCHEMA, orient="row"),
    )


def _rows(
    world_id: str, days_: list[dt.date], parts: list, names: list[str], schema: dict, col: str
) -> pl.DataFrame:
    """Long rows (world, date, <col>, weight) from per-day (k, index array, weight array) parts."""
    if not parts:
        return pl.DataFrame(schema=schema)
    k = np.concatenate([np.full(len(i), kk, dtype=np.int64) for kk, i, _ in parts])
    idx = np.concatenate([i for _, i, _ in parts]).astype(np.int64)
    w = np.concatenate([v for _, _, v in parts]).astype(np.float64)
    return pl.DataFrame(
        {
            "world": pl.Series([world_id] * len(k), dtype=pl.String),
            "date": pl.Series(days_, dtype=pl.Date).gather(k),
            col: pl.Series(names, dtype=pl.String).gather(idx)
            if len(names)
            else pl.Series([], dtype=pl.String),
            "weight": w,
        }
    ).select([c for c in schema if c in ("world", "date", col, "weight")])
