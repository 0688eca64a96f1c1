"""`tuning_report.md`: a study's folds, leaderboard, best trial's fold metrics, parameter importances, the
multiple-testing figures, and the optimization history chart (PNG beside it). Pure: no Dagster."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import polars as pl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from quantlab import metrics
from quantlab.markdown import md_table

PERIODS = 252


def history_png(trials: pl.DataFrame, title: str) -> bytes:
    """Objective of each completed trial (dots) and the best so far (line), by trial number."""
    done = trials.filter((pl.col("state") == "COMPLETE") & pl.col("value").is_not_null()).sort("trial")
    fig = Figure(figsize=(8.0, 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    if done.height:
        x = done.get_column("trial").to_numpy()
        y = done.get_column("value").to_numpy()
        ax.scatter(x, y, s=14, color="tab:blue", alpha=0.7, label="trial objective")
        ax.step(x, np.maximum.accumulate(y), where="post", color="tab:red", lw=1.4, label="best so far")
        ax.legend(loc="lower right", frameon=False)
    ax.set_xlabel("trial")
    ax.set_ylabel("objective (out-of-sample)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def multiple_testing(n_trials: int, sr_variance: float | None) -> dict[str, float]:
    """The deflated Sharpe's benchmark for this many trials: E[max SR] per period and annualized."""
    if n_trials < 2 or sr_variance is None or not math.isfinite(sr_variance):
        return {"expected_max_sr_daily": 0.0, "expected_max_sharpe": 0.0}
    e = float(metrics.expected_max_sharpe(n_trials, sr_variance))
    return {"expected_max_sr_daily": e, "expected_max_sharpe": e * math.sqrt(PERIODS)}


def tuning_report(
    study: str,
    storage: str,
    trials: pl.DataFrame,
    stats: dict,
    importances: dict[str, float],
    png_name: str,
    top: pl.DataFrame,
) -> str:
    """The markdown of one study (`trials`: its `tuning_trials` rows; `stats`: the strategy's
    `trial_stats` row over all its studies; `top`: the leaderboard)."""
    states = trials.group_by("state").agg(pl.len().alias("n")).sort("state")
    first = trials.row(0, named=True) if trials.height else None
    lines = [f"# Tuning study `{study}`", ""]
    if first is not None:
        lines += [
            f"Strategy `{first['strategy']}` version {first['strategy_version']}; window "
            f"{first['window_start']} .. {first['window_end']}; storage `{storage}`.",
            "",
            "Trials by state: " + ", ".join(f"{r['state']} {r['n']}" for r in states.iter_rows(named=True)),
            "",
        ]
    mt = multiple_testing(int(stats.get("n_trials") or 0), stats.get("sr_variance"))
    lines += [
        "## Multiple testing",
        "",
        f"Trials counted for `{stats.get('strategy', '-')}` over {stats.get('studies', 0)} study(ies): "
        f"**{stats.get('n_trials', 0)}**; variance of their per-period out-of-sample Sharpe ratios: "
        f"{_num(stats.get('sr_variance'), '.3g')}; expected maximum Sharpe of that many zero-skill trials: "
        f"{mt['expected_max_sharpe']:.2f} (annualized). The strategy's deflated Sharpe (`kpis.dsr`) is its "
        "probabilistic Sharpe against that benchmark (Bailey & López de Prado).",
        "",
        "## Leaderboard",
        "",
        md_table(top),
        "",
    ]
    best = top.row(0, named=True) if top.height else None
    if best is not None:
        row = trials.filter(pl.col("trial") == best["trial"]).row(0, named=True)
        folds = pl.DataFrame(json.loads(row["folds"])) if row["folds"] != "[]" else pl.DataFrame()
        lines += [
            f"## Best trial {best['trial']}: out-of-sample metrics per fold",
            "",
            "Parameters: " + ", ".join(f"`{k}` = {v}" for k, v in json.loads(row["params"]).items()),
            "",
            md_table(folds),
            "",
        ]
    if importances:
        imp = pl.DataFrame({"parameter": list(importances), "importance": list(importances.values())})
        lines += ["## Parameter importances (fANOVA)", "", md_table(imp), ""]
    lines += ["## Optimization history", "", f"![optimization history]({png_name})", ""]
    return "\n".join(lines)


def write_report(directory: Path, study: str, markdown: str, png: bytes) -> Path:
    """Write `tuning_report.md` and its PNG into `directory`; returns the markdown path."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / png_file(study)).write_bytes(png)
    path = directory / "tuning_report.md"
    path.write_text(markdown)
    return path


def png_file(study: str) -> str:
    return f"tuning_history_{study}.png"


def _num(v: float | None, fmt: str) -> str:
    return "-" if v is None or not math.isfinite(v) else format(v, fmt)
