"""`strategy_summary.md`: what each strategy is and what its target weights did over a run's range.

Per strategy: universe, signal (expression, or model with features and label), portfolio constraints, the
exposures of its target weights (gross = sum |w|, net = sum w, per decision date; average and peak), the
number of positions (non-zero weights), the turnover of the targets (mean over consecutive decision dates of
sum |w_t - w_{t-1}|, a symbol absent on a date counting as weight 0), and for model strategies the models
fitted in the range with their in-sample and out-of-sample IC (definitions: `quantlab.strategy_lab.model`).

The decision dates are those of the `targets` frame (all strategies), so a strategy with no target on such a
date (e.g. a model strategy before its first model) counts as flat there.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import polars as pl

from quantlab.features.sets import FeatureSet
from quantlab.markdown import md_table
from quantlab.strategy_lab.spec import ESTIMATORS, ModelSignal, StrategySpec, resolve_feature_set


def exposure_stats(
    targets: pl.DataFrame, dates: list[dt.date] | None = None
) -> dict[str, float | int | None]:
    """Exposure, position and turnover statistics of one strategy's target rows (date, symbol, weight)."""
    days = sorted(set(dates) if dates is not None else set(targets.get_column("date").to_list()))
    if not days:
        return {
            "dates": 0,
            "avg_gross": None,
            "peak_gross": None,
            "avg_net": None,
            "peak_net": None,
            "avg_positions": None,
            "max_positions": None,
            "turnover": None,
        }
    grid = pl.DataFrame({"date": days}, schema={"date": pl.Date})
    per_date = grid.join(
        targets.group_by("date").agg(
            gross=pl.col("weight").abs().sum(),
            net=pl.col("weight").sum(),
            positions=(pl.col("weight") != 0).sum().cast(pl.Int64),
        ),
        on="date",
        how="left",
    ).fill_null(0)
    wide = (
        targets.filter(pl.col("weight") != 0).pivot(
            on="symbol", index="date", values="weight", aggregate_function="sum"
        )
        if targets.filter(pl.col("weight") != 0).height
        else pl.DataFrame({"date": []}, schema={"date": pl.Date})
    )
    wide = grid.join(wide, on="date", how="left").sort("date").fill_null(0.0)
    symbols = [c for c in wide.columns if c != "date"]
    turnover = None
    if len(days) > 1:
        if symbols:
            changes = wide.select(
                pl.sum_horizontal(pl.col(s).diff().abs() for s in symbols).alias("t")
            ).slice(1)
            turnover = float(changes.get_column("t").mean())
        else:
            turnover = 0.0
    net = per_date.get_column("net")
    peak_net_i = int(net.abs().arg_max())
    return {
        "dates": len(days),
        "avg_gross": float(per_date.get_column("gross").mean()),
        "peak_gross": float(per_date.get_column("gross").max()),
        "avg_net": float(net.mean()),
        "peak_net": float(net[peak_net_i]),
        "avg_positions": float(per_date.get_column("positions").mean()),
        "max_positions": int(per_date.get_column("positions").max()),
        "turnover": turnover,
    }


def _fmt(value: float | int | None, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"


def _signal_lines(spec: StrategySpec, feature_sets: Mapping[str, FeatureSet] | None) -> list[str]:
    signal = spec.signal
    if not isinstance(signal, ModelSignal):
        return [f"- **Signal**: rank by `{signal.score}` (higher is better)"]
    est = ESTIMATORS[signal.estimator]
    cls = (est.classifier if signal.is_classifier else est.regressor) or ""
    score = "probability of class 1" if signal.is_classifier else "prediction"
    try:
        fset = resolve_feature_set(signal, feature_sets or {})
        features = f"`{fset.id}` (version {fset.version}): {', '.join(fset.features)}"
    except ValueError:
        features = f"`{signal.features}`"
    return [
        f"- **Signal**: model `{signal.estimator}` ({cls.rpartition(':')[2]}), params `{signal.params_json}`, "
        f"seed {signal.seed}; score = {score}",
        f"- **Features**: {features}; preprocessing `{signal.preprocess}`",
        f"- **Label**: `{signal.label}` (horizon {signal.horizon} sessions)",
        f"- **Walk-forward**: train window {signal.train_window} sessions, refit every {signal.refit_every} "
        f"sessions, purge {signal.horizon} + embargo {signal.embargo} sessions, "
        f"min {signal.min_train_rows} training rows",
    ]


def strategy_summary(
    specs: Mapping[str, StrategySpec],
    targets: pl.DataFrame,
    models: pl.DataFrame | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
    feature_sets: Mapping[str, FeatureSet] | None = None,
) -> str:
    """Markdown report of every strategy over the range of `targets` (rows of the `targets` table) and the
    `models` rows fitted in it."""
    dates = sorted(set(targets.get_column("date").to_list())) if targets.height else []
    lo, hi = start or (dates[0] if dates else None), end or (dates[-1] if dates else None)
    lines = [
        "# Strategy summary",
        "",
        f"Decision dates {lo} .. {hi} ({len(dates)} sessions with targets); {len(specs)} strategies. "
        "Exposures are of the target weights decided at each close (gross = sum |w|, net = sum w); "
        "turnover = mean daily sum |w_t - w_{t-1}|.",
        "",
    ]
    for sid, spec in specs.items():
        own = targets.filter(pl.col("strategy") == sid) if targets.height else targets
        seen = sorted(set(own.get_column("symbol").to_list())) if own.height else []
        if spec.universe.symbols is not None:
            universe = f"{len(spec.universe.symbols)} symbols: {', '.join(spec.universe.symbols)}"
        else:
            universe = f"all symbols ({len(seen)} scored in the range: {', '.join(seen) or 'none'})"
        port = spec.portfolio
        stats = exposure_stats(own, dates)
        lines += [
            f"## {sid} (version {spec.version})",
            "",
            *([f"_{spec.description}_", ""] if spec.description else []),
            f"- **Tags**: {', '.join(spec.tags) or 'none'}",
            f"- **Universe**: {universe}",
            *_signal_lines(spec, feature_sets),
            f"- **Constraints**: long {port.long.describe() if port.long.enabled else 'off'}, short {port.short.describe() if port.short.enabled else 'off'} ({port.side}), "
            f"weighting {port.weighting}, max weight {port.max_weight}, gross {port.gross}; "
            f"rebalance every {spec.rebalance.every} sessions",
            "",
            "| dates | avg gross | peak gross | avg net | peak net | avg positions | max positions | turnover |",
            "|---|---|---|---|---|---|---|---|",
            "| "
            + " | ".join(
                _fmt(stats[k])
                for k in (
                    "dates",
                    "avg_gross",
                    "peak_gross",
                    "avg_net",
                    "peak_net",
                    "avg_positions",
                    "max_positions",
                    "turnover",
                )
            )
            + " |",
            "",
        ]
        if isinstance(spec.signal, ModelSignal):
            fitted = (
                models.filter(pl.col("strategy") == sid).sort("date")
                if models is not None and models.height
                else pl.DataFrame()
            )
            if fitted.height:
                table = fitted.select(
                    pl.col("date").alias("fit date"),
                    "model_id",
                    "n_train",
                    pl.format("{} .. {}", "train_start", "train_end").alias("training dates"),
                    pl.col("in_sample_ic").alias("in-sample IC"),
                    pl.col("oos_ic").alias("OOS IC (previous model)"),
                    pl.col("oos_dates").alias("OOS dates"),
                )
                ic = fitted.get_column("oos_ic").drop_nulls()
                lines += [
                    f"Models fitted in the range: {fitted.height}; mean in-sample IC "
                    f"{_fmt(fitted.get_column('in_sample_ic').drop_nulls().mean())}, mean OOS IC "
                    f"{_fmt(ic.mean() if ic.len() else None)} over {ic.len()} refits.",
                    "",
                    md_table(table, max_rows=60),
                    "",
                ]
            else:
                lines += ["No model was fitted in the range (no fit date, or too little training data).", ""]
    return "\n".join(lines)
