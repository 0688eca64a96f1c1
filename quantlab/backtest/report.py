"""Per-strategy backtest report: a markdown section, an equity/drawdown PNG and the KPI values behind them.

Pure module (no Dagster, no warehouse): inputs are one strategy's `strategy_returns` rows and its `trades`
rows (columns of `quantlab.schemas.StrategyReturns` / `Trades`). Every metric comes from `quantlab.metrics`
(its conventions: simple daily returns, 252 periods a year, positive drawdown fractions, NaN on degenerate
inputs); this module only adds plain sums / means of the inputs and the presentation.

KPIs (``StrategyReport.kpis``, floats, NaN when undefined; shown as "n/a")
--------------------------------------------------------------------------
On the NET returns: ``sharpe``, ``sortino``, ``cagr`` (metrics.annual_return), ``annual_volatility``,
``max_drawdown`` (positive fraction), ``calmar``, ``ulcer_index``, ``hit_rate``, ``tail_ratio``, ``var_5``
(historical 5% VaR, a return quantile, usually negative), ``stability``, ``psr`` (against a zero Sharpe).
On the GROSS returns: ``sharpe_gross``, ``cagr_gross``. Plus ``mean_turnover`` (metrics.turnover of the
daily turnover), ``cost_share``, ``avg_gross_exposure``, ``avg_net_exposure`` (plain means of the daily
exposures), ``n_trades`` and ``sessions`` (counts, as floats).

Cost share of gross PnL: ``cost_share = sum_t cost_t / sum_t gross_t`` with arithmetic sums of the daily
simple returns (the engine's ``net = gross - cost``, so ``sum(net) = sum(gross) * (1 - cost_share)``).
Only defined when the gross PnL ``sum(gross)`` is strictly positive; otherwise (no gross profit to share)
it is NaN and shown as "n/a". It exceeds 100% when costs eat more than the whole gross profit.

Empty inputs (no returns yet): the section says so, ``equity_png == b""`` (no placeholder image is
produced and the section holds no image link), every KPI is NaN except ``sessions`` (0) and ``n_trades``.
"""

from __future__ import annotations

import datetime as dt
import io
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure

from quantlab import metrics

__all__ = [
    "KPI_KEYS",
    "SUMMARY_FILE",
    "TRADE_COLUMNS",
    "StrategyReport",
    "equity_png_name",
    "strategy_report",
    "trades_csv",
    "write_reports",
]

SUMMARY_FILE = "backtest_summary.md"
_TRADE_SCHEMA = {
    "date": pl.Date,
    "strategy": pl.String,
    "symbol": pl.String,
    "side": pl.String,
    "weight_change": pl.Float64,
    "price": pl.Float64,
    "cost": pl.Float64,
}
TRADE_COLUMNS = tuple(_TRADE_SCHEMA)
FIGSIZE = (9.0, 5.0)
DPI = 100
NA = "n/a"


def _pct(v: float) -> str:
    return f"{v:.2%}"


def _ratio(v: float) -> str:
    return f"{v:.2f}"


def _count(v: float) -> str:
    return f"{int(v):,}"


#: (key, label, formatter) of each KPI table row, in table order.
_ROWS: tuple[tuple[str, str, Callable[[float], str]], ...] = (
    ("sharpe", "Sharpe (net)", _ratio),
    ("sharpe_gross", "Sharpe (gross)", _ratio),
    ("sortino", "Sortino (net)", _ratio),
    ("cagr", "CAGR (net)", _pct),
    ("cagr_gross", "CAGR (gross)", _pct),
    ("annual_volatility", "Annual volatility", _pct),
    ("max_drawdown", "Max drawdown", _pct),
    ("calmar", "Calmar", _ratio),
    ("ulcer_index", "Ulcer index", _pct),
    ("hit_rate", "Hit rate", _pct),
    ("tail_ratio", "Tail ratio", _ratio),
    ("var_5", "VaR 5% (daily)", _pct),
    ("stability", "Stability (R²)", _ratio),
    ("psr", "PSR (SR > 0)", _pct),
    ("mean_turnover", "Mean daily turnover", _pct),
    ("cost_share", "Cost share of gross PnL", _pct),
    ("avg_gross_exposure", "Avg gross exposure", _pct),
    ("avg_net_exposure", "Avg net exposure", _pct),
    ("n_trades", "Trades", _count),
)
KPI_KEYS: tuple[str, ...] = (*(k for k, _, _ in _ROWS), "sessions")
_FORMAT = {k: f for k, _, f in _ROWS} | {"sessions": _count}

#: (key, header) of the run-level table in `write_reports`.
_RUN_COLUMNS = (
    ("sessions", "Sessions"),
    ("sharpe", "Sharpe"),
    ("sharpe_gross", "Sharpe (gross)"),
    ("cagr", "CAGR"),
    ("annual_volatility", "Vol"),
    ("max_drawdown", "Max DD"),
    ("psr", "PSR"),
    ("cost_share", "Cost share"),
    ("n_trades", "Trades"),
)


@dataclass(frozen=True)
class StrategyReport:
    """One strategy's report. `markdown` is its `backtest_summary` section (starts with a level-2 heading);
    `equity_png` is empty when there were no returns; `kpis` holds the values shown (keys: `KPI_KEYS`)."""

    strategy: str
    markdown: str
    equity_png: bytes
    kpis: dict[str, float]


def equity_png_name(strategy: str) -> str:
    """File name of a strategy's equity chart as written by `write_reports` (and linked by default)."""
    return f"{strategy}_equity.png"


# ------------------------------------------------------------------------------------------------ helpers
def _fmt(key: str, value: float) -> str:
    if value is None or not math.isfinite(value):
        return NA
    return _FORMAT[key](value)


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _own_rows(df: pl.DataFrame, strategy: str) -> pl.DataFrame:
    """The strategy's rows (a frame without a `strategy` column is taken as the strategy's own)."""
    if "strategy" in df.columns:
        return df.filter(pl.col("strategy") == strategy)
    return df


def _col(df: pl.DataFrame, name: str) -> np.ndarray:
    return df.get_column(name).cast(pl.Float64).fill_null(float("nan")).to_numpy()


def _mean(x: np.ndarray) -> float:
    x = x[~np.isnan(x)]
    return float(np.mean(x)) if x.size else float("nan")


def _compute_kpis(returns: pl.DataFrame, n_trades: int) -> dict[str, float]:
    net, gross, cost = _col(returns, "net"), _col(returns, "gross"), _col(returns, "cost")
    total_gross, total_cost = float(np.nansum(gross)), float(np.nansum(cost))
    cost_share = total_cost / total_gross if math.isfinite(total_gross) and total_gross > 0 else float("nan")
    return {
        "sharpe": metrics.sharpe_ratio(net),
        "sharpe_gross": metrics.sharpe_ratio(gross),
        "sortino": metrics.sortino_ratio(net),
        "cagr": metrics.annual_return(net),
        "cagr_gross": metrics.annual_return(gross),
        "annual_volatility": metrics.annual_volatility(net),
        "max_drawdown": metrics.max_drawdown(net),
        "calmar": metrics.calmar_ratio(net),
        "ulcer_index": metrics.ulcer_index(net),
        "hit_rate": metrics.hit_rate(net),
        "tail_ratio": metrics.tail_ratio(net),
        "var_5": metrics.value_at_risk(net, 0.05),
        "stability": metrics.stability(net),
        "psr": metrics.probabilistic_sharpe_ratio(net),
        "mean_turnover": metrics.turnover(_col(returns, "turnover")),
        "cost_share": cost_share,
        "avg_gross_exposure": _mean(_col(returns, "gross_exposure")),
        "avg_net_exposure": _mean(_col(returns, "net_exposure")),
        "n_trades": float(n_trades),
        "sessions": float(returns.height),
    }


def _largest_trades(trades: pl.DataFrame, top: int) -> list[str]:
    if top <= 0 or trades.is_empty():
        return []
    rows = (
        trades.with_columns(pl.col("weight_change").abs().alias("_abs"))
        .sort(["_abs", "date", "symbol"], descending=[True, False, False], nulls_last=True)
        .head(top)
    )
    out = [
        f"### Largest trades (top {rows.height} by |weight change|)",
        "",
        "| Date | Symbol | Side | Weight change | Price | Cost (bp) |",
        "|---|---|---|---:|---:|---:|",
    ]
    for r in rows.iter_rows(named=True):
        wc, px, c = r["weight_change"], r["price"], r["cost"]
        out.append(
            f"| {r['date']} | {_cell(r['symbol'])} | {r['side']} | "
            f"{NA if wc is None else f'{wc:+.2%}'} | {NA if px is None else f'{px:,.2f}'} | "
            f"{NA if c is None else f'{c * 1e4:.2f}'} |"
        )
    return [*out, ""]


def _equity_png(strategy: str, dates: Sequence[dt.date], gross: np.ndarray, net: np.ndarray) -> bytes:
    """Two panels: compounded net and gross equity from 1.0, and the net drawdown in negative percent."""
    net0, gross0 = np.nan_to_num(net), np.nan_to_num(gross)  # a missing return plots as a flat day
    x = np.asarray(dates, dtype="datetime64[D]")
    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    FigureCanvasAgg(fig)
    ax_eq, ax_dd = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax_eq.plot(x, np.cumprod(1.0 + gross0), color="tab:gray", lw=1.0, label="gross")
    ax_eq.plot(x, np.cumprod(1.0 + net0), color="tab:blue", lw=1.3, label="net")
    ax_eq.axhline(1.0, color="black", lw=0.6, alpha=0.5)
    ax_eq.set_ylabel("equity (start = 1)")
    ax_eq.legend(loc="upper left", frameon=False)
    ax_eq.grid(alpha=0.3)
    ax_eq.set_title(f"{strategy} — equity and drawdown (net)")
    dd = -100.0 * metrics.drawdown_series(net0)
    ax_dd.fill_between(x, dd, 0.0, color="tab:red", alpha=0.4, lw=0)
    ax_dd.plot(x, dd, color="tab:red", lw=0.8)
    ax_dd.set_ylabel("drawdown %")
    ax_dd.set_ylim(top=0.0, bottom=min(-1.0, float(dd.min()) * 1.1) if dd.size else -1.0)
    ax_dd.grid(alpha=0.3)
    locator = AutoDateLocator()
    ax_dd.xaxis.set_major_locator(locator)
    ax_dd.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    fig.subplots_adjust(left=0.09, right=0.98, top=0.92, bottom=0.08, hspace=0.08)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------------- API
def strategy_report(
    strategy: str,
    returns: pl.DataFrame,
    trades: pl.DataFrame,
    *,
    png_name: str | None = None,
    top_trades: int = 10,
) -> StrategyReport:
    """The report of one strategy from its `strategy_returns` rows and its `trades` rows.

    Frames with a `strategy` column are filtered to `strategy`; returns are sorted by date. `png_name` is
    the image link target (default `equity_png_name(strategy)`, the name `write_reports` writes). A frame
    without rows (or without columns, as the backtester returns before inception) means "no returns yet".
    """
    returns = _own_rows(returns, strategy)
    trades = _own_rows(trades, strategy)
    n_trades = trades.height
    png_name = equity_png_name(strategy) if png_name is None else png_name
    head = [f"## {strategy}", ""]

    if returns.is_empty():
        kpis = dict.fromkeys(KPI_KEYS, float("nan")) | {"sessions": 0.0, "n_trades": float(n_trades)}
        text = [*head, "_No backtest returns yet: no KPIs and no equity chart._", ""]
        return StrategyReport(strategy, "\n".join(text), b"", kpis)

    returns = returns.sort("date")
    kpis = _compute_kpis(returns, n_trades)
    dates = returns.get_column("date").to_list()
    text = [
        *head,
        f"Period: {dates[0]} .. {dates[-1]} ({returns.height:,} sessions)",
        "",
        "| KPI | Value |",
        "|---|---:|",
        *(f"| {label} | {_fmt(key, kpis[key])} |" for key, label, _ in _ROWS),
        "",
        "Net KPIs unless marked gross. Max drawdown and ulcer index are positive fractions of the peak; "
        "cost share = total cost / total gross PnL (sums of daily returns), n/a when gross PnL <= 0. "
        "Trade cost in basis points of portfolio value.",
        "",
        *_largest_trades(trades, top_trades),
        f"![equity]({png_name})",
        "",
    ]
    png = _equity_png(strategy, dates, _col(returns, "gross"), _col(returns, "net"))
    return StrategyReport(strategy, "\n".join(text), png, kpis)


def _check_name(strategy: str) -> None:
    if not strategy or strategy in {".", ".."} or Path(strategy).name != strategy or "\\" in strategy:
        raise ValueError(f"strategy id {strategy!r} cannot name a file")


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_reports(reports: list[StrategyReport], directory: Path) -> Path:
    """Write `directory/backtest_summary.md` and `directory/<strategy>_equity.png` per report; return the
    markdown path.

    The markdown has a title, a run-level table of all strategies (in the given order), then each section.
    Idempotent: files are overwritten (atomically), and a stale chart of a strategy that now has none is
    removed. A report carrying a chart must link it as `equity_png_name(strategy)` (the default png_name).
    """
    directory = Path(directory)
    seen: set[str] = set()
    for rep in reports:
        _check_name(rep.strategy)
        if rep.strategy in seen:
            raise ValueError(f"duplicate report for strategy {rep.strategy!r}")
        seen.add(rep.strategy)
        if rep.equity_png and f"]({equity_png_name(rep.strategy)})" not in rep.markdown:
            raise ValueError(f"report {rep.strategy!r} does not link {equity_png_name(rep.strategy)}")
    directory.mkdir(parents=True, exist_ok=True)

    lines = ["# Backtest summary", ""]
    if reports:
        lines += [
            "| Strategy | " + " | ".join(h for _, h in _RUN_COLUMNS) + " |",
            "|---|" + "---:|" * len(_RUN_COLUMNS),
        ]
        for rep in reports:
            cells = (_fmt(k, rep.kpis.get(k, float("nan"))) for k, _ in _RUN_COLUMNS)
            lines.append(f"| {_cell(rep.strategy)} | " + " | ".join(cells) + " |")
        lines.append("")
    else:
        lines += ["_No strategies._", ""]
    for rep in reports:
        lines += [rep.markdown.rstrip("\n"), ""]

    for rep in reports:
        png = directory / equity_png_name(rep.strategy)
        if rep.equity_png:
            _write_atomic(png, rep.equity_png)
        else:
            png.unlink(missing_ok=True)
    md = directory / SUMMARY_FILE
    _write_atomic(md, "\n".join(lines).encode("utf-8"))
    return md


def trades_csv(trades: pl.DataFrame, path: Path) -> Path:
    """Write `trades` as CSV sorted by (date, strategy, symbol); a frame without columns gives a header-only
    file with the `Trades` columns. Parent directories are created; returns `path`."""
    path = Path(path)
    if not trades.columns:
        trades = pl.DataFrame(schema=_TRADE_SCHEMA)
    path.parent.mkdir(parents=True, exist_ok=True)
    trades.sort(["date", "strategy", "symbol"]).write_csv(path)
    return path
