"""`strategy_returns` (+ `trades`) and `kpis`: the backtester on each strategy's targets."""

import datetime as dt
from pathlib import Path

import dagster as dg
import polars as pl

from quantlab.assets.common import StageRun, chain_asset, md_table, write
from quantlab.assets.tuning import tuning_trials_by_strategy
from quantlab.backtest.kpis import asof_kpis
from quantlab.backtest.report import equity_png_name, strategy_report, trades_csv, write_reports
from quantlab.backtest.run import backtest_strategy, warmup_start
from quantlab.partitions import partition_dates
from quantlab.project import Project
from quantlab.resources import ProjectFiles, Warehouse


def run_strategy_returns(
    warehouse: Warehouse, project: Project, start: dt.date, end: dt.date, run_dir: Path | None = None
) -> StageRun:
    """Backtest every strategy for [start, end] from its targets and the bars (with a warm-up window).

    With `run_dir`, also writes `reports/backtest_summary.md` (each strategy's whole track up to `end`,
    with equity and drawdown charts) and `trades.csv` (the trades of [start, end]) there.
    """
    specs = project.strategies
    inception = dict(
        warehouse.read(
            "SELECT strategy, min(date) FROM targets WHERE weight <> 0 AND date <= ? GROUP BY strategy", [end]
        ).iter_rows()
    )
    rets, trades = [], []
    lows = {sid: warmup_start(start, spec, inception.get(sid)) for sid, spec in specs.items()}
    columns = ["symbol", "date", "open", "close", "close_raw", "volume"]
    all_bars = warehouse.read_table("ohlcv", min(lows.values(), default=start), end, columns=columns)
    for sid, spec in specs.items():
        lo = lows[sid]
        bars = all_bars.filter(pl.col("date") >= lo)
        tgt = warehouse.read_table(
            "targets", lo, end, where={"strategy": sid}, columns=["date", "symbol", "weight"]
        )
        r, t = backtest_strategy(bars, tgt, spec, start, end, inception.get(sid))
        rets.append(r)
        trades.append(t)
    returns = pl.concat([r for r in rets if r.height]) if any(r.height for r in rets) else pl.DataFrame()
    trade_rows = (
        pl.concat([t for t in trades if t.height]) if any(t.height for t in trades) else pl.DataFrame()
    )
    n = write(warehouse, "strategy_returns", returns, start, end)
    write(warehouse, "trades", trade_rows, start, end)
    summary = (
        returns.group_by("strategy")
        .agg(
            pl.len().alias("days"),
            ((1 + pl.col("net")).product() - 1).alias("net_return"),
            pl.col("cost").sum().alias("costs"),
            pl.col("turnover").mean().alias("avg_turnover"),
        )
        .sort("strategy")
        if n
        else pl.DataFrame()
    )
    metadata = {"rows": n, "trades": trade_rows.height, "summary": dg.MetadataValue.md(md_table(summary))}
    if run_dir is not None and n:
        metadata.update(write_backtest_reports(warehouse, list(specs), end, trade_rows, run_dir))
    return StageRun(metadata=metadata)


def write_backtest_reports(
    warehouse: Warehouse, strategies: list[str], end: dt.date, trade_rows: pl.DataFrame, run_dir: Path
) -> dict[str, dg.MetadataValue]:
    """backtest_summary.md (+ charts) over each strategy's track up to `end`, and the run's trades.csv."""
    history = warehouse.read_table("strategy_returns", end=end)
    trades = warehouse.read_table("trades", end=end)
    reports = [
        strategy_report(
            sid,
            history.filter(pl.col("strategy") == sid).sort("date"),
            trades.filter(pl.col("strategy") == sid),
            png_name=equity_png_name(sid),
        )
        for sid in strategies
    ]
    summary = write_reports(reports, run_dir / "reports")
    csv = trades_csv(trade_rows, run_dir / "trades.csv")
    return {
        "backtest_summary": dg.MetadataValue.path(str(summary)),
        "trades_csv": dg.MetadataValue.path(str(csv)),
    }


@chain_asset(
    group_name="backtest",
    deps=["targets", "ohlcv"],
    kinds={"duckdb", "numpy"},
    description="Daily gross/cost/net returns, legs, turnover and exposure per strategy (next-bar execution); "
    "also writes `trades`.",
)
def strategy_returns(
    context: dg.AssetExecutionContext, warehouse: Warehouse, project_files: ProjectFiles
) -> dg.MaterializeResult:
    run_dir = project_files.run_dir(context.run_id)
    return run_strategy_returns(warehouse, project_files.load(), *partition_dates(context), run_dir).result()


def run_kpis(warehouse: Warehouse, start: dt.date, end: dt.date) -> StageRun:
    """As-of KPIs for [start, end] from each strategy's whole return history up to `end`."""
    history = warehouse.read_table(
        "strategy_returns", end=end, columns=["date", "strategy", "net", "turnover", "long_ret", "short_ret"]
    )
    counts = (
        warehouse.read("SELECT date, strategy, count(*) AS n FROM trades WHERE date <= ? GROUP BY ALL", [end])
        if warehouse.has_table("trades")
        else pl.DataFrame(schema={"date": pl.Date, "strategy": pl.String, "n": pl.Int64})
    )
    trials = tuning_trials_by_strategy(warehouse)
    out = asof_kpis(history, counts, start, end, trials) if history.height else pl.DataFrame()
    n = write(warehouse, "kpis", out, start, end)
    meta: dict = {"rows": n}
    if trials:
        meta["tuning_trials"] = dg.MetadataValue.json(
            {s: {"n_trials": t[0], "sr_variance": t[1]} for s, t in trials.items()}
        )
    if n:
        last = out.filter((pl.col("date") == pl.col("date").max()) & (pl.col("window") == "full"))
        meta["latest_full_window"] = dg.MetadataValue.md(
            md_table(
                last.select(
                    "strategy", "sample_days", "sharpe", "annual_return", "max_dd", "hit_rate", "turnover"
                )
            )
        )
        for r in last.iter_rows(named=True):
            if r["sharpe"] is not None:
                meta[f"sharpe_full/{r['strategy']}"] = float(r["sharpe"])
    return StageRun(metadata=meta)


@chain_asset(
    group_name="backtest",
    deps=["strategy_returns"],
    kinds={"duckdb", "numpy"},
    description="As-of KPIs per strategy and date over windows 20d/60d/126d/252d/full (conventions: quantlab.metrics).",
)
def kpis(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
    return run_kpis(warehouse, *partition_dates(context)).result()
