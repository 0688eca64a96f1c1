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
   with target weight 0). A day rejected by an earlier rule approves nothing and is not turnover-limited.
   A partial move between two books that each satisfy rules 4-8 satisfies them too (they are convex);
   `max_positions` can be exceeded on such a day (the union of both books is held).
`flag` only records, `reject` approves nothing for that strategy and date. Every row carries the
strategy-level flags so a reader sees why a name was cut; every triggered rule is one `audit_log` row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import polars as pl

from quantlab.supervisor.spec import RiskLimits, Rule, ScoreFloor

_W = pl.col("w")
_BY = ("date", "strategy")
_EPS = 1e-12
RULES = tuple(RiskLimits.model_fields)
_ACTIONS = ("flag", "scale", "reject")

AUDIT_SCHEMA = {
    "date": pl.Date,
    "strategy": pl.String,
    "rule": pl.String,
    "action": pl.String,
    "limit": pl.Float64,
    "measured": pl.Float64,
    "reason": pl.String,
}


@dataclass(frozen=True)
class Supervision:
    """`approvals` rows (date, strategy, symbol) and `audit_log` rows (date, strategy, rule)."""

    approvals: pl.DataFrame
    audit: pl.DataFrame


def _conviction() -> pl.Expr:
    return (pl.col("score") * _W.sign()).fill_null(-np.inf).fill_nan(-np.inf)


def _measure(name: str, rule: Rule | ScoreFloor) -> pl.Expr:
    held = _W != 0
    if name == "max_drawdown":
        return pl.col("max_dd").fill_null(0.0)
    if name == "min_score":
        return pl.when(held).then(_conviction()).min().over(_BY)
    if name == "max_positions":
        return held.sum().over(_BY).cast(pl.Float64)
    if name == "max_symbol_weight":
        return _W.abs().max().over(_BY)
    if name == "max_long_gross":
        return _W.clip(lower_bound=0.0).sum().over(_BY)
    if name == "max_short_gross":
        return (-_W).clip(lower_bound=0.0).sum().over(_BY)
    if name == "max_gross":
        return _W.abs().sum().over(_BY)
    return _W.sum().over(_BY).abs()  # max_net


def _scaled(name: str, rule: Rule | ScoreFloor, hit: pl.Expr) -> pl.Expr:
    m = pl.col("_m")
    if name == "min_score":
        return pl.when((_W != 0) & (_conviction() < rule.limit)).then(0.0).otherwise(_W)
    if name == "max_positions":
        keep = _W.abs().rank("ordinal", descending=True).over(_BY) <= rule.limit
        return pl.when(keep).then(_W).otherwise(0.0)
    if name == "max_symbol_weight":
        return _W.clip(-rule.limit, rule.limit)
    if name == "max_long_gross":
        return pl.when(hit & (_W > 0)).then(_W * rule.limit / m).otherwise(_W)
    if name == "max_short_gross":
        return pl.when(hit & (_W < 0)).then(_W * rule.limit / m).otherwise(_W)
    if name in ("max_gross", "max_net"):
        return pl.when(hit).then(_W * rule.limit / m).otherwise(_W)
    return _W  # drawdown cannot be scaled away: scale acts as flag


def _text(name: str, rule: Rule | ScoreFloor) -> pl.Expr:
    head = f"{name}[{rule.action}]"
    if name == "min_score":
        below = ((_W != 0) & (_conviction() < rule.limit)).sum().over(_BY)
        lowest = pl.col("_m").round(4).cast(pl.String)
        return pl.format(f"{head}: {{}} names below {rule.limit:g} (lowest {{}})", below, lowest)
    return pl.format(f"{head}: {{}} > {rule.limit:g}", pl.col("_m").round(4))


def _append(flags: pl.Expr, text: pl.Expr) -> pl.Expr:
    return pl.when(flags == "").then(text).otherwise(pl.concat_str([flags, text], separator="; "))


def _vector_rules(df: pl.DataFrame, limits: RiskLimits) -> tuple[pl.DataFrame, list[pl.DataFrame]]:
    """Rules 1-8 on the rows of strategies sharing `limits` (vectorized over dates and strategies)."""
    audits = []
    for name in RULES[:-1]:
        rule = getattr(limits, name)
        if rule is None:
            continue
        df = df.with_columns(_m=_measure(name, rule))
        hit = (
            (pl.col("_m") < rule.limit - _EPS) if name == "min_score" else (pl.col("_m") > rule.limit + _EPS)
        )
        df = df.with_columns(_hit=hit.fill_null(False), _t=_text(name, rule))
        audits.append(
            df.filter("_hit")
            .unique(subset=list(_BY), keep="first")
            .select(
                *_BY,
                rule=pl.lit(name),
                action=pl.lit(rule.action),
                limit=pl.lit(float(rule.limit)),
                measured=pl.col("_m"),
                reason=pl.col("_t"),
            )
        )
        df = df.with_columns(
            w=_scaled(name, rule, pl.col("_hit")) if rule.action == "scale" else _W,
            flags=pl.when("_hit").then(_append(pl.col("flags"), pl.col("_t"))).otherwise(pl.col("flags")),
            rejected=pl.col("rejected") | (pl.col("_hit") & pl.lit(rule.action == "reject")),
        )
    return df.drop("_m", "_hit", "_t", strict=False), audits


def _index(values: pl.Series, keys: list) -> np.ndarray:
    return values.replace_strict(keys, list(range(len(keys))), return_dtype=pl.Int64).to_numpy()


def _turnover(
    df: pl.DataFrame,
    presence: pl.DataFrame,
    limits: Mapping[str, RiskLimits],
    previous: pl.DataFrame,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Rule 9 in date order over the strategies that have it; returns the rows and the audit rows."""
    ids = sorted(s for s, lim in limits.items() if lim.max_turnover is not None)
    if not ids:
        return df, pl.DataFrame(schema=AUDIT_SCHEMA)
    sub = df.filter(pl.col("strategy").is_in(ids)).sort("date", "strategy", "symbol")
    rest = df.filter(~pl.col("strategy").is_in(ids))
    pres = presence.filter(pl.col("strategy").is_in(ids)).sort("date", "strategy")
    prev_rows = previous.filter(pl.col("strategy").is_in(ids) & (pl.col("approved_weight") != 0))
    symbols = sorted(set(sub.get_column("symbol")) | set(prev_rows.get_column("symbol")))
    days = pres.get_column("date").unique().sort()
    n_s, n_n = len(ids), len(symbols)
    lim = np.array([limits[s].max_turnover.limit for s in ids])  # type: ignore[union-attr]
    act = np.array([_ACTIONS.index(limits[s].max_turnover.action) for s in ids])  # type: ignore[union-attr]

    day_of = {d: k for k, d in enumerate(days.to_list())}
    r_day = sub.get_column("date").replace_strict(day_of, return_dtype=pl.Int64).to_numpy()
    r_s, r_n = _index(sub.get_column("strategy"), ids), _index(sub.get_column("symbol"), symbols)
    r_w = np.where(sub.get_column("rejected").to_numpy(), 0.0, sub.get_column("w").to_numpy())
    r_rej = sub.get_column("rejected").to_numpy()
    p_day = pres.get_column("date").replace_strict(day_of, return_dtype=pl.Int64).to_numpy()
    p_s = _index(pres.get_column("strategy"), ids)
    r_ptr = np.searchsorted(r_day, np.arange(len(days) + 1))
    p_ptr = np.searchsorted(p_day, np.arange(len(days) + 1))

    held = np.zeros((n_s, n_n))
    if prev_rows.height:
        held[
            _index(prev_rows.get_column("strategy"), ids), _index(prev_rows.get_column("symbol"), symbols)
        ] = prev_rows.get_column("approved_weight").to_numpy()
    new_w = np.empty(len(r_w))
    to_out = np.zeros(len(p_s))
    hit_out = np.zeros(len(p_s), dtype=bool)
    extra: list[tuple[int, int, int, float]] = []
    for k in range(len(days)):
        rows = slice(r_ptr[k], r_ptr[k + 1])
        present = p_s[p_ptr[k] : p_ptr[k + 1]]
        rs, rn = r_s[rows], r_n[rows]
        cand = held.copy()
        cand[present] = 0.0
        cand[rs, rn] = r_w[rows]
        rej = np.zeros(n_s, dtype=bool)
        rej[rs] = r_rej[rows]
        diff = cand - held
        to = np.abs(diff).sum(axis=1)
        on = np.zeros(n_s, dtype=bool)
        on[present] = True
        hit = on & ~rej & (to > lim + _EPS)
        factor = np.where(hit & (act == 1), lim / np.where(to > 0, to, 1.0), 1.0)
        final = held + diff * factor[:, None]
        final[hit & (act == 2)] = 0.0
        new_w[rows] = final[rs, rn]
        to_out[p_ptr[k] : p_ptr[k + 1]] = to[present]
        hit_out[p_ptr[k] : p_ptr[k + 1]] = hit[present]
        scaled = np.flatnonzero(hit & (act == 1))
        if scaled.size:
            known = np.zeros((n_s, n_n), dtype=bool)
            known[rs, rn] = True
            si, ni = np.nonzero((final[scaled] != 0) & ~known[scaled])
            extra.extend(
                (k, int(scaled[a]), int(b), float(final[scaled[a], b])) for a, b in zip(si, ni, strict=True)
            )
        held = final

    sub = sub.with_columns(w=pl.Series(new_w))
    if extra:
        k_, s_, n_, w_ = zip(*extra, strict=True)
        sub = pl.concat(
            [
                sub,
                pl.DataFrame(
                    {
                        "date": days.gather(list(k_)),
                        "strategy": [ids[i] for i in s_],
                        "symbol": [symbols[i] for i in n_],
                        "weight": 0.0,
                        "w": list(w_),
                        "rejected": False,
                    }
                ).join(sub.unique(subset=list(_BY)).select(*_BY, "flags"), on=_BY, how="left"),
            ],
            how="diagonal_relaxed",
        )
    rule_of = {s: limits[s].max_turnover for s in ids}
    measured = pres.with_columns(measured=pl.Series(to_out), _hit=pl.Series(hit_out)).filter("_hit")
    audit = measured.select(
        *_BY,
        rule=pl.lit("max_turnover"),
        action=pl.col("strategy").replace_strict({s: r.action for s, r in rule_of.items()}),  # type: ignore[union-attr]
        limit=pl.col("strategy").replace_strict({s: float(r.limit) for s, r in rule_of.items()}),  # type: ignore[union-attr]
        measured="measured",
    ).with_columns(
        reason=pl.format(
            "max_turnover[{}]: {} > {}", "action", pl.col("measured").round(4), pl.col("limit").round(6)
        )
    )
    sub = (
        sub.join(audit.select(*_BY, "action", _t="reason"), on=_BY, how="left")
        .with_columns(
            flags=pl.when(pl.col("_t").is_not_null())
            .then(_append(pl.col("flags").fill_null(""), pl.col("_t")))
            .otherwise(pl.col("flags").fill_null("")),
            rejected=pl.col("rejected") | (pl.col("action") == "reject").fill_null(False),
        )
        .drop("_t", "action")
    )
    return pl.concat([rest, sub], how="diagonal_relaxed"), audit.select(list(AUDIT_SCHEMA))


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
    ids = sorted(targets.get_column("strategy").unique().to_list())
    per = {s: limits for s in ids} if isinstance(limits, RiskLimits) else {s: limits[s] for s in ids}
    if "score" not in targets.columns:
        targets = targets.with_columns(score=pl.lit(None, dtype=pl.Float64))
    presence = targets.select(*_BY).unique()
    df = (
        targets.filter(pl.col("weight") != 0)
        .select(*_BY, "symbol", "weight", pl.col("score").cast(pl.Float64))
        .sort("strategy", "date", "symbol")  # deterministic ties for max_positions scaling
        .join(kpis_full.select(*_BY, "max_dd"), on=_BY, how="left")
        .with_columns(w=pl.col("weight"), flags=pl.lit(""), rejected=pl.lit(False))
    )
    groups: dict[RiskLimits, list[str]] = {}
    for s in ids:
        groups.setdefault(per[s], []).append(s)
    parts, audits = [], []
    for lim, members in groups.items():
        part, audit = _vector_rules(df.filter(pl.col("strategy").is_in(members)), lim)
        parts.append(part)
        audits.extend(audit)
    df = pl.concat(parts) if parts else df
    prev = (
        previous
        if previous is not None
        else pl.DataFrame(schema={"strategy": pl.String, "symbol": pl.String, "approved_weight": pl.Float64})
    )
    df, turnover_audit = _turnover(df, presence, per, prev)
    approvals = df.select(
        "date",
        "strategy",
        "symbol",
        pl.col("weight").alias("target_weight"),
        pl.when(pl.col("rejected")).then(0.0).otherwise(_W).alias("approved_weight"),
        (~pl.col("rejected")).alias("approved"),
        pl.col("flags").alias("risk_flags"),
        pl.when(pl.col("rejected"))
        .then(pl.format("rejected: {}", pl.col("flags")))
        .when(pl.col("flags") != "")
        .then(pl.format("approved with adjustments: {}", pl.col("flags")))
        .otherwise(pl.lit("approved: within all risk limits"))
        .alias("reason"),
    ).sort("date", "strategy", "symbol")
    audit = pl.concat(
        [a.select(list(AUDIT_SCHEMA)).cast(AUDIT_SCHEMA) for a in [*audits, turnover_audit]]  # type: ignore[arg-type]
        or [pl.DataFrame(schema=AUDIT_SCHEMA)],
    )
    order = {r: i for i, r in enumerate(RULES)}
    audit = audit.sort("date", "strategy", pl.col("rule").replace_strict(order, return_dtype=pl.Int64))
    return Supervision(approvals=approvals, audit=audit)
