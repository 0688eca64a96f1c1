"""A world's chart: equity curve (circuit-breaker periods shaded), drawdown, and allocation history."""

from __future__ import annotations

import io

import numpy as np
import polars as pl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure


def world_chart(world: str, track: pl.DataFrame, allocations: pl.DataFrame) -> bytes:
    """PNG bytes: `world_returns` rows (equity, drawdown, circuit) and `world_allocations` rows (stacked
    weight per strategy and session) of one world."""
    track = track.sort("date")
    fig = Figure(figsize=(9, 6), dpi=80)
    FigureCanvasAgg(fig)
    ax_eq, ax_dd, ax_al = fig.subplots(3, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1, 2]})
    x = np.asarray(track.get_column("date").to_list(), dtype="datetime64[D]")
    if len(x):
        ax_eq.plot(x, track.get_column("equity").to_numpy(), color="tab:blue", lw=1.3, label="equity")
        on = track.get_column("circuit").to_numpy()
        top = float(track.get_column("equity").max())
        ax_eq.fill_between(x, 0, top, where=on, color="tab:red", alpha=0.12, lw=0, label="circuit breaker on")
        ax_eq.set_ylim(bottom=float(track.get_column("equity").min()) * 0.98, top=top * 1.02)
        dd = -100.0 * track.get_column("drawdown").to_numpy()
        ax_dd.fill_between(x, dd, 0.0, color="tab:red", alpha=0.4, lw=0)
    ax_eq.axhline(1.0, color="black", lw=0.6, alpha=0.5)
    ax_eq.set_ylabel("equity (start = 1)")
    ax_eq.legend(loc="upper left", frameon=False)
    ax_eq.set_title(f"world {world} — equity, drawdown and allocation")
    ax_dd.set_ylabel("drawdown %")
    if allocations.height:
        wide = (
            track.select("date")  # every session: one without allocation rows is cash (0)
            .join(
                allocations.pivot(on="strategy", index="date", values="weight", aggregate_function="sum"),
                on="date",
                how="left",
            )
            .sort("date")
            .fill_null(0.0)
        )
        names = [c for c in wide.columns if c != "date"]
        xa = np.asarray(wide.get_column("date").to_list(), dtype="datetime64[D]")
        ax_al.stackplot(xa, *[wide.get_column(n).to_numpy() for n in names], labels=names, step="post")
        ax_al.legend(loc="upper left", frameon=False, fontsize=7, ncol=min(4, len(names)))
    ax_al.set_ylabel("allocation")
    for ax in (ax_eq, ax_dd, ax_al):
        ax.grid(alpha=0.3)
    locator = AutoDateLocator()
    ax_al.xaxis.set_major_locator(locator)
    ax_al.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    fig.subplots_adjust(left=0.08, right=0.98, top=0.94, bottom=0.06, hspace=0.08)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
