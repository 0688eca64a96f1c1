"""Apply risk rules to targets: approvals with final weights, flags, readable reasons and an audit log.

Rules run in this order per (date, strategy), each on the weights left by the previous one:
1. `max_drawdown`: the strategy's as-of max drawdown over its full history (KPI `max_dd`, window `full`;
   missing counts as 0); it cannot be scaled away, so `scale` acts as `flag`;
2. `min_score`: a held name's conviction (its score for a long, minus its score for a short; a missing
   score counts as below any floor) must be at least the limit (`scale` drops the names below it);
3. `max_positions`: number of non-zero names (`scale` keeps the largest |weight|, ties by symbol);
4. `max_symbol_weight`: largest |weight| (`scale` clips each name);
5. `max_long_gross` / 6. `max_short_gross`: sum of the long / |short| weights (`scale` shrinks that side);
7. `max_gross`: sum |weight|; 8. `max_net`: |sum weight| (`scale` shrinks the book proportionally);
9. `max_turnover`: sum |w_t - w_prev| against the strategy's approved book of its previous target date
   (stateful, computed in date order; entering from cash counts as turnover). `scale` moves only part of
   the way, w = w_prev + (w_t - w_prev) * limit / turnover, which can keep names the target dropped (rows
   with target weight 0); such a name left under 1 bp (`DUST`) is closed, so exits do not linger as dust.
   A day rejected by an earlier rule approves nothing and is not turnover-limited.
   A partial move between two books that each satisfy rules 4-8 satisfies them too (they are convex);
   `max_positions` can be exceeded on such a day (the union of both books is held).
`flag` only records, `reject` approves nothing for that strategy and date. Every row carries the
strategy-level flags so a reader sees why a name was cut; every triggered rule is one `audit_log` row.

Implementation: rows become integer codes sorted by (date, strategy, symbol); each rule is a segment
reduction per (strategy, date) in numpy with per-strategy limits, text is formatted only for the rules
that fired. Rule 9 measures every date against the previous target book at once, on dense (date,
strategy, symbol) blocks (the next block built in the pool of `quantlab.parallel` while the current one
steps); only the strategies whose held book differs from their target after a hit step date by date (see
`_turnover`). Meanwhile the pool formats the audit text of rules 1-8.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import polars as pl

from quantlab.codes import ranges, run_codes, run_starts
from quantlab.parallel import prefetch, start
from quantlab.supervisor.spec import RiskLimits

_EPS = 1e-12
DUST = 1e-4  # a name a partial move leaves under 1 bp that the target no longer holds is closed
RULES = tuple(RiskLimits.model_fields)
_ACTIONS = ("flag", "scale", "reject")
_SCALE, _REJECT = 1, 2  # indices in _ACTIONS
_BLOCK = 1 << 20  # elements of a dense (date, strategy, symbol) block of the turnover rule


@dataclass(frozen=True)
class Supervision:
    """`approvals` rows (date, strategy, symbol) and `audit_log` rows (date, strategy, rule)."""

    approvals: pl.DataFrame
    audit: pl.DataFrame


@dataclass
class _Book:
    """Rows sorted by (date, strategy, symbol) as integer codes, grouped by (date, strategy)."""

    s: np.ndarray
    d: np.ndarray
    n: np.ndarray
    target: np.ndarray
    w: np.ndarray
    score: np.ndarray
    grp: np.ndarray  # group of each row
    starts: np.ndarray  # first row of each group
    ends: np.ndarray  # one past its last row
    g_s: np.ndarray  # strategy code of each group
    g_d: np.ndarray  # date code of each group
    g_key: np.ndarray  # date code * number of strategies + strategy code of each group (ascending)
    max_dd: np.ndarray  # per group

    def reduce(self, ufunc: np.ufunc, values: np.ndarray) -> np.ndarray:
        return ufunc.reduceat(values, self.starts) if len(self.starts) else np.zeros(0)


def _rule_arrays(name: str, per: list[RiskLimits]) -> tuple[np.ndarray, np.ndarray]:
    """Per strategy code: the rule's limit (NaN when absent) and action code (-1 when absent)."""
    rules = [getattr(lim, name) for lim in per]
    limit = np.array([np.nan if r is None else float(r.limit) for r in rules])
    action = np.array([-1 if r is None else _ACTIONS.index(r.action) for r in rules])
    return limit, action


def _measure(name: str, b: _Book, lim_g: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """The rule's measure per group (and, for `min_score`, the number of names below the floor)."""
    w, held = b.w, b.w != 0
    if name == "max_drawdown":
        return np.nan_to_num(b.max_dd, nan=0.0), None
    if name == "min_score":
        conv = np.nan_to_num(b.score * np.sign(w), nan=-np.inf)
        below = held & (conv < lim_g[b.grp])
        return b.reduce(np.minimum, np.where(held, conv, np.inf)), b.reduce(np.add, below.astype(np.int64))
    if name == "max_positions":
        return b.reduce(np.add, held.astype(np.float64)), None
    if name == "max_symbol_weight":
        return b.reduce(np.maximum, np.abs(w)), None
    if name == "max_long_gross":
        return b.reduce(np.add, np.maximum(w, 0.0)), None
    if name == "max_short_gross":
        return b.reduce(np.add, np.maximum(-w, 0.0)), None
    if name == "max_gross":
        return b.reduce(np.add, np.abs(w)), None
    return np.abs(b.reduce(np.add, w)), None  # max_net


def _scale(name: str, b: _Book, scale_g: np.ndarray, lim_g: np.ndarray, m_g: np.ndarray) -> None:
    """Apply `scale` in place to the rows of the groups in `scale_g`."""
    g = np.flatnonzero(scale_g)
    if not g.size or name == "max_drawdown":  # max_drawdown cannot be scaled away: scale acts as flag
        return
    idx = ranges(b.starts[g], b.ends[g])
    grp, w = b.grp[idx], b.w[idx]
    if name == "min_score":
        conv = np.nan_to_num(b.score[idx] * np.sign(w), nan=-np.inf)
        w[(w != 0) & (conv < lim_g[grp])] = 0.0
    elif name == "max_positions":
        order = np.lexsort((idx, -np.abs(w), grp))  # |w| descending, ties by symbol
        g_sorted = grp[order]
        first = run_starts(g_sorted)
        rank = np.arange(idx.size) - np.repeat(first, np.diff(np.r_[first, idx.size]))
        w[order[rank >= lim_g[g_sorted]]] = 0.0
    elif name == "max_symbol_weight":
        w = np.clip(w, -lim_g[grp], lim_g[grp])
    else:  # max_long_gross, max_short_gross, max_gross, max_net: shrink the side
        side = w > 0 if name == "max_long_gross" else w < 0 if name == "max_short_gross" else slice(None)
        w[side] *= (lim_g / np.where(m_g > 0, m_g, 1.0))[grp][side]
    b.w[idx] = w


def _group_of(b: _Book, s: np.ndarray, d: np.ndarray, n_s: int) -> np.ndarray:
    """The group of each (strategy, date) pair, -1 where it has no rows."""
    key = d * n_s + s
    if not len(b.g_key):
        return np.full(len(key), -1)
    g = np.minimum(np.searchsorted(b.g_key, key), len(b.g_key) - 1)
    return np.where(b.g_key[g] == key, g, -1)


def _turnover(
    b: _Book,
    rejected: np.ndarray,
    pres_s: np.ndarray,
    pres_d: np.ndarray,
    per: list[RiskLimits],
    held: np.ndarray,
) -> tuple[dict[str, np.ndarray], tuple[np.ndarray, ...]]:
    """Rule 9 in date order. Updates `b.w` (and `rejected`, per group); returns its audit part (one
    trigger per hit, as the other rules') and the extra rows (strategy, date, symbol, weight) a partial
    move keeps.

    While a strategy holds its target books, its turnover is measured against its previous target book
    (the "chain"): that is computed for every date at once, on dense (date, strategy, symbol) blocks.
    Only a `scale` or `reject` hit makes the held book differ from the target; from there the strategies
    in such an episode step one date at a time (all of them at once) until a date within the limit.
    """
    limit, action = _rule_arrays("max_turnover", per)
    has = action >= 0
    keep = has[pres_s]
    pres_s, pres_d = pres_s[keep], pres_d[keep]
    n_s, n_n = held.shape
    days_on = np.unique(pres_d)
    n_k = len(days_on)
    k_of = np.searchsorted(days_on, pres_d)
    present = np.zeros((n_k, n_s), dtype=bool)
    present[k_of, pres_s] = True
    same = np.r_[False, pres_s[1:] == pres_s[:-1]]  # presents are sorted by (strategy, date)
    prev_k = np.full((n_k, n_s), -1)  # the strategy's previous target date
    prev_k[k_of, pres_s] = np.where(same, np.r_[-1, k_of[:-1]], -1)
    lim = np.where(has, limit, np.inf)
    lim_eps = np.full((n_k, n_s), np.inf)  # the hit threshold; none on a date rejected by an earlier rule
    lim_eps[k_of, pres_s] = lim[pres_s] + _EPS
    g_on = has[b.g_s] & rejected
    lim_eps[np.searchsorted(days_on, b.g_d[g_on]), b.g_s[g_on]] = np.inf
    # the groups by block position (a rejected date's target book is cash: its rows are left out)
    g_k = np.searchsorted(days_on, b.g_d)  # ascending
    g_used = has[b.g_s] & ~rejected
    scale_s, reject_s, stepped = action == _SCALE, action == _REJECT, action >= _SCALE
    any_reject = bool(reject_s.any())
    block = max(1, min(n_k, _BLOCK // max(n_s * n_n, 1)))
    chain = _chain(b, g_k, np.flatnonzero(g_used), present, prev_k, held, block)
    book = np.zeros((n_s, n_n))  # the held book of the strategies in an episode
    episode = np.zeros(n_s, dtype=bool)
    in_episode = False
    empty = np.zeros(0, dtype=np.int64)
    hit_s, hit_k, hit_to, extra = [empty], [empty], [np.zeros(0)], []
    for k0, dense, src, to in prefetch(chain):  # the next block is built while this one steps
        n_j = len(to)
        pres, lim_b = present[k0 : k0 + n_j], lim_eps[k0 : k0 + n_j]
        chain_hit = to > lim_b
        fj, fs = np.nonzero(chain_hit & ~stepped)  # a flag changes nothing: its hits are the chain's
        hit_s.append(fs)
        hit_k.append(fj + k0)
        hit_to.append(to[fj, fs])
        starts = chain_hit & stepped
        start_any = starts.any(axis=1)
        steps, step_j = [], []
        with np.errstate(divide="ignore", invalid="ignore"):
            for j, start_j in enumerate(start_any.tolist()):
                if start_j:
                    items = (pres[j] & (episode | starts[j])).nonzero()[0]
                    new = items[~episode[items]]
                    book[new] = dense[src[j][new], new]
                elif in_episode:
                    items = (pres[j] & episode).nonzero()[0]
                else:
                    continue
                h = book[items]
                diff = dense[j + 1][items]
                diff -= h
                t = np.add.reduce(np.abs(diff), axis=1)
                hit = t > lim_b[j][items]
                moved = diff * (lim[items] / t)[:, None]  # scale: part of the way
                moved += h
                dropped = diff == -h  # names the target dropped stay unless under DUST
                np.putmask(moved, dropped & (np.abs(moved) < DUST), 0.0)
                book[items] = moved  # what a strategy leaving its episode keeps is not read again
                if any_reject:
                    book[items[hit & reject_s[items]]] = 0.0  # a rejection holds cash
                episode[items] = hit
                in_episode = episode.any()
                steps.append((items, t, hit, moved, dropped))
                step_j.append(j)
        if steps:
            it, t, hit, moved, dropped = (np.concatenate(c) for c in zip(*steps, strict=True))
            kk = np.repeat(np.array(step_j) + k0, [len(x[0]) for x in steps])
            hit_s.append(it[hit])
            hit_k.append(kk[hit])
            hit_to.append(t[hit])
            sc = hit & scale_s[it]
            ms, md, moved, dropped = it[sc], days_on[kk[sc]], moved[sc], dropped[sc]
            g = _group_of(b, ms, md, n_s)  # the moved books' rows take their weights
            on = np.flatnonzero(g >= 0)
            at = ranges(b.starts[g[on]], b.ends[g[on]])
            rep = np.repeat(on, b.ends[g[on]] - b.starts[g[on]])
            b.w[at] = moved[rep, b.n[at]]
            has_row = np.zeros(moved.shape, dtype=bool)  # a name cut by an earlier rule keeps its row
            has_row[rep, b.n[at]] = True
            mi, ni = np.nonzero(dropped & (moved != 0) & ~has_row)  # names without a row: extra rows
            extra.append((ms[mi], md[mi], ni, moved[mi, ni]))
    hs, hd, ht = np.concatenate(hit_s), days_on[np.concatenate(hit_k)], np.concatenate(hit_to)
    rejects = action[hs] == _REJECT
    g = _group_of(b, hs[rejects], hd[rejects], n_s)  # a turnover rejection rejects its group
    rejected[g[g >= 0]] = True
    cols = (
        tuple(np.concatenate(c) for c in zip(*extra, strict=True))
        if extra
        else (empty, empty, empty, np.zeros(0))
    )
    part = {
        "s": hs,
        "d": hd,
        "rank": np.full(len(hs), len(RULES) - 1),
        "action": action[hs],
        "limit": limit[hs],
        "measured": ht,
        "below": np.zeros(len(hs), dtype=np.int64),
    }
    return part, cols


def _chain(
    b: _Book,
    g_k: np.ndarray,
    g: np.ndarray,
    present: np.ndarray,
    prev_k: np.ndarray,
    held: np.ndarray,
    block: int,
) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """The target books of the groups `g` (`g_k`: the block position of every group) on dense
    (date, strategy, symbol) blocks of `block` dates: per block its first date k0, `dense` (row 0: each
    strategy's last target book before the block, from `held` on; row 1 + j: the books of date k0 + j),
    `src` (the row of `dense` with each (date, strategy)'s previous target book) and `to` (the turnover
    of each target book against that one: the chain). Reads only the rows of its block from `b.w`."""
    n_k, n_s = present.shape
    n_n = held.shape[1]
    last = held.copy()
    k_g = g_k[g]
    flat = (k_g * n_s + b.g_s[g]) * n_n  # each group's offset in a dense block starting at date 0
    bounds = np.searchsorted(k_g, np.arange(0, n_k + block, block))
    for k0, lo, hi in zip(range(0, n_k, block), bounds[:-1], bounds[1:], strict=True):
        n_j = min(block, n_k - k0)
        gb = g[lo:hi]
        dense = np.zeros((n_j + 1, n_s, n_n))
        dense[0] = last
        rows = ranges(b.starts[gb], b.ends[gb])
        dense.reshape(-1)[
            np.repeat(flat[lo:hi] - (k0 - 1) * n_s * n_n, b.ends[gb] - b.starts[gb]) + b.n[rows]
        ] = b.w[rows]
        pres = present[k0 : k0 + n_j]
        src = np.maximum(prev_k[k0 : k0 + n_j] - k0 + 1, 0)  # the row of `dense` with the previous book
        diff = dense[1:] - dense[:-1]
        to = np.abs(diff, out=diff).sum(axis=2)
        gj, gs = np.nonzero(pres & (src != np.arange(n_j)[:, None]))  # a previous target date further back
        to[gj, gs] = np.abs(dense[gj + 1, gs] - dense[src[gj, gs], gs]).sum(axis=1)
        covered = pres.any(axis=0)
        last_j = n_j - np.argmax(pres[::-1], axis=0)  # the row of `dense` with its last target book
        last[covered] = dense[last_j[covered], np.flatnonzero(covered)]
        yield k0, dense, src, to


def _kpi(
    kpis_full: pl.DataFrame, ids: list[str], first_day: int, n_days: int, keys: np.ndarray
) -> np.ndarray:
    """`max_dd` of each (strategy code * n_days + day) key, NaN where missing."""
    kp = kpis_full.filter(
        pl.col("strategy").is_in(ids)
        & pl.col("date").cast(pl.Int32).is_between(first_day, first_day + n_days - 1)
    ).select(
        key=pl.col("strategy").cast(pl.Enum(ids)).to_physical().cast(pl.Int64) * n_days
        + (pl.col("date").cast(pl.Int32) - first_day),
        max_dd=pl.col("max_dd").cast(pl.Float64),
    )
    k, v = kp.get_column("key").to_numpy(), kp.get_column("max_dd").to_numpy()
    by = np.argsort(k, kind="stable")
    k, v = k[by], v[by]
    at = np.minimum(np.searchsorted(k, keys), max(len(k) - 1, 0))
    return np.where(k[at] == keys, v[at], np.nan) if len(k) else np.full(len(keys), np.nan)


def supervise(
    targets: pl.DataFrame,
    kpis_full: pl.DataFrame,
    limits: RiskLimits | Mapping[str, RiskLimits],
    previous: pl.DataFrame | None = None,
) -> Supervision:
    """Approvals and audit rows for the targets of one or more strategies.

    `targets`: rows (date, strategy, symbol, weight[, score]); zero weights are dropped (a date with only
    zero weights still counts as a target date for the turnover rule). `kpis_full`: as-of KPIs for the
    `full` window (date, strategy, max_dd). `limits`: one `RiskLimits` for every strategy, or one per
    strategy id. `previous`: each strategy's approved book on its last target date before the range
    (strategy, symbol, approved_weight), the state of `max_turnover`.
    """
    s_all, ids = run_codes(targets.get_column("strategy"))
    per = [limits if isinstance(limits, RiskLimits) else limits[s] for s in ids]
    if "score" not in targets.columns:
        targets = targets.with_columns(score=pl.lit(None, dtype=pl.Float64))
    prev = (
        previous
        if previous is not None
        else pl.DataFrame(schema={"strategy": pl.String, "symbol": pl.String, "approved_weight": pl.Float64})
    )
    prev = prev.filter(pl.col("strategy").is_in(ids) & (pl.col("approved_weight") != 0))
    weight = targets.get_column("weight")
    keep = (weight != 0).fill_null(False).to_numpy()
    symbol = targets.get_column("symbol").filter(keep)
    syms = sorted(set(symbol.unique().to_list()) | set(prev.get_column("symbol").to_list()))
    day = targets.get_column("date").cast(pl.Int32)
    first_day = int(day.min()) if day.len() else 0
    n_days = int(day.max()) - first_day + 1 if day.len() else 1
    d_all = day.to_numpy() - np.int32(first_day)  # int32, as stored
    n_held = symbol.cast(pl.Enum(syms)).to_physical().to_numpy()  # uint32, polars' own buffer
    rows = np.flatnonzero(keep)
    key = d_all[rows].astype(np.int64)
    key *= len(ids)
    key += s_all[rows]
    key *= max(len(syms), 1)
    key += n_held
    order = np.argsort(key, kind="stable")
    del key
    rows = rows[order]
    s, d, n = s_all[rows], d_all[rows].astype(np.int64), n_held[order].astype(np.int64)
    starts = run_starts(s, d)
    ends = np.r_[starts[1:], len(s)]
    target = weight.cast(pl.Float64).to_numpy()[rows]
    b = _Book(
        s=s,
        d=d,
        n=n,
        target=target,
        w=target.copy(),
        score=targets.get_column("score").cast(pl.Float64).to_numpy()[rows],
        grp=np.repeat(np.arange(len(starts)), ends - starts),
        starts=starts,
        ends=ends,
        g_s=s[starts],
        g_d=d[starts],
        g_key=d[starts] * len(ids) + s[starts],
        max_dd=_kpi(kpis_full, ids, first_day, n_days, s[starts] * n_days + d[starts]),
    )
    rejected = np.zeros(len(starts), dtype=bool)
    audit_parts: list[dict] = []
    for rank, name in enumerate(RULES[:-1]):
        limit, action = _rule_arrays(name, per)
        if (action < 0).all():
            continue
        lim_g, act_g = limit[b.g_s], action[b.g_s]
        m_g, below = _measure(name, b, lim_g)
        with np.errstate(invalid="ignore"):
            hit = (act_g >= 0) & ((m_g < lim_g - _EPS) if name == "min_score" else (m_g > lim_g + _EPS))
        if not hit.any():
            continue
        g = np.flatnonzero(hit)
        audit_parts.append(
            {
                "s": b.g_s[g],
                "d": b.g_d[g],
                "rank": np.full(g.size, rank),
                "action": act_g[g],
                "limit": lim_g[g],
                "measured": m_g[g],
                "below": below[g] if below is not None else np.zeros(g.size, dtype=np.int64),
            }
        )
        _scale(name, b, hit & (act_g == _SCALE), lim_g, m_g)
        rejected |= hit & (act_g == _REJECT)
    zero = (weight == 0).fill_null(False).to_numpy()
    pres_key = b.g_s * n_days + b.g_d
    if zero.any():  # a date with only zero weights is a target date too
        pres_key = np.concatenate([pres_key, s_all[zero] * n_days + d_all[zero]])
    pres_key.sort()  # by (strategy, date)
    pres_key = pres_key[run_starts(pres_key)]
    held = np.zeros((len(ids), len(syms)))
    if prev.height:
        held[
            run_codes(prev.get_column("strategy"), ids)[0], run_codes(prev.get_column("symbol"), syms)[0]
        ] = prev.get_column("approved_weight").to_numpy()
    triggers = _triggers(audit_parts)
    reasons = start(lambda: _reasons(triggers))  # the other rules' audit text, while rule 9 steps
    part, extra = _turnover(b, rejected, pres_key // n_days, pres_key % n_days, per, held)
    turnover = _triggers([part])
    audit = ((triggers, reasons.result()), (turnover, _reasons(turnover)))
    return _assemble(b, rejected, audit, extra, ids, syms, first_day)


def _triggers(parts: list[dict]) -> dict[str, np.ndarray]:
    """The audit parts' columns concatenated: (s, d, rank, action, below) as int64, (limit, measured)
    as float64."""
    keys = ("s", "d", "rank", "action", "limit", "measured", "below")
    return {
        k: np.concatenate([p[k] for p in parts] or [np.zeros(0)]).astype(
            np.float64 if k in ("limit", "measured") else np.int64
        )
        for k in keys
    }


def _reasons(t: dict[str, np.ndarray]) -> pl.Series:
    """Each trigger's reason, in the order given: the text around its measure, built once per (rule,
    action, limit)."""
    lims, lim_i = np.unique(t["limit"], return_inverse=True)
    combos, code = np.unique(
        (t["rank"] * len(_ACTIONS) + t["action"]) * len(lims) + lim_i, return_inverse=True
    )
    rank_c, rest = np.divmod(combos, len(_ACTIONS) * max(len(lims), 1))
    head, around = [], []
    for r, a, v in zip(
        rank_c.tolist(),
        (rest // max(len(lims), 1)).tolist(),
        lims[rest % max(len(lims), 1)].tolist(),
        strict=True,
    ):
        head.append(f"{RULES[r]}[{_ACTIONS[a]}]: ")
        around.append(f" names below {v:g} (lowest " if RULES[r] == "min_score" else f" > {v:g}")
    head_s, around_s = pl.Series(head, dtype=pl.String), pl.Series(around, dtype=pl.String)
    measured = pl.Series(t["measured"]).round(4).cast(pl.String)
    reason = pl.select(pl.concat_str(head_s.gather(code), measured, around_s.gather(code))).to_series()
    is_min = np.flatnonzero(t["rank"] == RULES.index("min_score"))
    if is_min.size:  # "<head>: <below> names below <limit> (lowest <measured>)"
        below = pl.Series(t["below"][is_min]).cast(pl.String)
        c = code[is_min]
        text = pl.concat_str(
            head_s.gather(c), below, around_s.gather(c), measured.gather(is_min), pl.lit(")")
        )
        reason.scatter(is_min, pl.select(text).to_series())
    return reason


def _assemble(
    b: _Book,
    rejected: np.ndarray,
    audit_parts: tuple[tuple[dict[str, np.ndarray], pl.Series], ...],
    extra: tuple[np.ndarray, ...],
    ids: list[str],
    syms: list[str],
    first_day: int,
) -> Supervision:
    """Approvals and audit frames from the arrays: codes back to strings, and the text (reason and flags)
    formatted once per trigger and per (date, strategy), then gathered onto the rows. `audit_parts`: the
    triggers (`_triggers`) and their reasons (`_reasons`) of each part."""
    n_s, n_n = len(ids), len(syms)
    arr = {k: np.concatenate([t[k] for t, _ in audit_parts]) for k in audit_parts[0][0]}
    gk = arr["d"] * n_s + arr["s"]  # (date, strategy) of each trigger
    by = np.argsort(gk * len(RULES) + arr["rank"])  # unique: a rule triggers once per (date, strategy)
    arr = {k: v[by] for k, v in arr.items()}
    gk = gk[by]
    reason = pl.concat([r for _, r in audit_parts], rechunk=True).gather(by)
    # flags per (date, strategy): the reasons of its triggers in rule order, joined by "; "
    first = run_starts(gk)
    cnt = np.diff(np.r_[first, len(gk)])
    flag_gk = gk[first]
    flags = reason.gather(first)
    multi = np.flatnonzero(cnt > 1)
    if multi.size:
        m_first, m_cnt = first[multi], cnt[multi]
        none = pl.Series([None], dtype=pl.String)
        parts = [
            reason.gather(m_first + np.minimum(i, m_cnt - 1)).zip_with(pl.Series(m_cnt > i), none)
            for i in range(int(m_cnt.max()))
        ]
        flags.scatter(multi, pl.select(pl.concat_str(parts, separator="; ", ignore_nulls=True)).to_series())
    # approval rows in (date, strategy, symbol) order: the book's rows with the extra rows merged in
    xs, xd, xn, xw = extra
    rows = {"s": b.s, "d": b.d, "n": b.n, "w": b.w, "target": b.target, "rejected": rejected[b.grp]}
    if len(xw):
        x_key = (xd * n_s + xs) * n_n + xn
        x_by = np.argsort(x_key, kind="stable")
        at = np.searchsorted((b.d * n_s + b.s) * n_n + b.n, x_key[x_by], side="right")  # after equal rows
        at += np.arange(len(xw))
        is_x = np.zeros(len(b.s) + len(xw), dtype=bool)
        is_x[at] = True
        is_row = ~is_x
        x_rows = {"s": xs, "d": xd, "n": xn, "w": xw, "target": 0.0, "rejected": False}
        for k, v in rows.items():
            rows[k] = np.empty(len(is_x), dtype=v.dtype)
            rows[k][is_row] = v
            x = x_rows[k]
            rows[k][is_x] = x[x_by] if isinstance(x, np.ndarray) else x
    # each row's flags: looked up once per run of rows of one (date, strategy)
    gk_row = rows["d"] * n_s + rows["s"]
    run = run_starts(gk_row)
    run_gk = gk_row[run]
    pos = np.minimum(np.searchsorted(flag_gk, run_gk), max(len(flag_gk) - 1, 0))
    found = flag_gk[pos] == run_gk if len(flag_gk) else np.zeros(len(run), dtype=bool)
    run_flag = np.where(found, pos, len(flag_gk)).astype(np.uint32)  # the appended default
    flag_rejected = np.zeros(len(flag_gk), dtype=bool)
    flag_rejected[pos[found]] = rows["rejected"][run[found]]
    verdict = pl.Series(["approved with adjustments: ", "rejected: "]).gather(flag_rejected.astype(np.int64))
    reasons = pl.select(pl.concat_str(verdict, flags)).to_series()
    names = pl.Series(ids, dtype=pl.String)
    rej = rows["rejected"]
    codes = pl.DataFrame(
        {
            "date": (rows["d"] + first_day).astype(np.int32),
            "s": rows["s"],
            "n": rows["n"],
            "target_weight": rows["target"],
            "approved_weight": np.where(rej, 0.0, rows["w"]),
            "approved": ~rej,
            "flag": np.repeat(run_flag, np.diff(np.r_[run, len(gk_row)])),
        }
    )
    approvals = codes.select(  # the string columns gathered in parallel
        pl.col("date").cast(pl.Date),
        strategy=pl.lit(names).gather("s"),
        symbol=pl.lit(pl.Series(syms, dtype=pl.String)).gather("n"),
        target_weight="target_weight",
        approved_weight="approved_weight",
        approved="approved",
        risk_flags=pl.lit(flags.append(pl.Series([""])).rechunk()).gather("flag"),
        reason=pl.lit(reasons.append(pl.Series(["approved: within all risk limits"])).rechunk()).gather(
            "flag"
        ),
    )
    audit = pl.DataFrame(
        {
            "date": pl.Series(arr["d"] + first_day, dtype=pl.Int32).cast(pl.Date),
            "strategy": names.gather(arr["s"]) if n_s else pl.Series([], dtype=pl.String),
            "rule": pl.Series(RULES, dtype=pl.String).gather(arr["rank"]),
            "action": pl.Series(_ACTIONS, dtype=pl.String).gather(arr["action"]),
            "limit": arr["limit"],
            "measured": arr["measured"],
            "reason": reason,
        }
    )
    return Supervision(approvals=approvals, audit=audit)
