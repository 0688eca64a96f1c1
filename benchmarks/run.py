#!/usr/bin/env python
"""Benchmark harness: times every PURE stage of the quantlab chain on a synthetic universe.

No Dagster and, except stage 2c (incremental ingest into a DuckDB file), no DuckDB: each stage calls the package functions the assets call, on in-memory frames, in
chain order (data -> quality -> features/labels -> targets -> backtest -> as-of KPIs -> supervisor ->
world evaluation and allocation). Results go to a JSON file (workload, machine, per-stage timings) and a
table is printed. See benchmarks/README.md.

    python benchmarks/run.py                          # reference: 500 symbols x 20 years, 10 strategies
    python benchmarks/run.py --symbols 50 --years 5   # quick
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import hashlib
import json
import os
import platform
import resource
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from machine import loadavg

from quantlab import calendar, metrics
from quantlab.assets.curator import run_ohlcv
from quantlab.backtest import kpis as bt_kpis
from quantlab.backtest.engine import ExecutionConfig, run_backtest
from quantlab.backtest.run import backtest_strategy
from quantlab.curator.anomaly import AnomalySettings, score_bars
from quantlab.curator.quality import quality_issues
from quantlab.curator.sources import FrameSource
from quantlab.curator.synthetic import synthetic_ohlcv
from quantlab.features.labels import compute_labels
from quantlab.features.library import compute_features
from quantlab.resources import Warehouse
from quantlab.strategy_lab.spec import StrategySpec
from quantlab.strategy_lab.targets import strategy_targets
from quantlab.supervisor.rules import supervise
from quantlab.supervisor.spec import SupervisorSpec
from quantlab.world.allocate import WorldState, allocate_world, history_start
from quantlab.world.decide import State
from quantlab.world.evaluate import evaluate_world, metric_panel
from quantlab.world.spec import WorldSpec

END = dt.date(2025, 12, 31)
RESULTS = Path(__file__).resolve().parent / "results"
SCHEMA_VERSION = 1
ASOF_WINDOWS: dict[str, int | None] = {"20d": 20, "60d": 60, "252d": 252, "full": None}
PROBE_SESSIONS = 252  # sessions of the world-stage probe used to decide whether the full range fits
PACKAGES = ("numpy", "polars", "pyarrow", "scipy", "pydantic", "exchange-calendars", "quantlab")

# Strategy families and their variants: (score, long top, short top, rebalance every).
FAMILIES: tuple[tuple[str, str, str, list[tuple[str, int, int, int]]], ...] = (
    ("momentum", "equal", "open", [
        ("mom_60 - 0.5 * vol_60", 20, 0, 5),
        ("mom_120 - 0.5 * vol_60", 20, 0, 5),
        ("mom_20 - 0.25 * vol_20", 15, 0, 5),
    ]),
    ("meanrev", "equal", "open", [
        ("-zscore_20", 10, 0, 1),
        ("-zscore_20 - rsi_14 / 100", 10, 0, 1),
        ("-ma_gap_20", 15, 0, 2),
    ]),
    ("lowvol", "inverse_vol", "close", [
        ("-vol_60", 30, 0, 21),
        ("-vol_20", 30, 0, 21),
        ("-beta_60", 25, 0, 21),
    ]),
    ("longshort", "equal", "open", [
        ("mom_120", 20, 20, 10),
        ("mom_60", 15, 15, 10),
        ("xs_z_mom_20", 20, 20, 5),
    ]),
)  # fmt: skip


# ----------------------------------------------------------------------------------------- workload
def strategy_specs(k: int, n_symbols: int) -> dict[str, StrategySpec]:
    """K strategies cycling through the families (momentum, mean reversion, low vol, long/short) and their
    variants; leg sizes are capped so both legs fit in the universe."""
    specs: dict[str, StrategySpec] = {}
    for i in range(k):
        family, weighting, price, variants = FAMILIES[i % len(FAMILIES)]
        rnd = i // len(FAMILIES)
        score, top, short, every = variants[rnd % len(variants)]
        extra = 5 * (rnd // len(variants))  # beyond the listed variants: larger books
        cap = max(1, n_symbols // 2) if short else n_symbols
        top, short = min(top + extra, cap), min(short + extra if short else 0, cap)
        spec = StrategySpec.model_validate(
            {
                "id": f"{family}_{i:02d}",
                "description": f"benchmark {family} strategy",
                "tags": ["equity", family],
                "universe": {"all": True},
                "signal": {"kind": "rank", "score": score},
                "portfolio": {
                    "long": {"top": top},
                    "short": {"top": short},
                    "weighting": weighting,
                    "max_weight": 0.5 if short else 1.0,
                    "gross": 1.0,
                },
                "rebalance": {"every": every},
                "execution": {"price": price, "lag": 1},
                "costs": {"fee_bps": 1.0, "slippage_bps": 5.0},
            }
        )
        spec.score_expr  # noqa: B018 - parse now: a bad expression fails here, not in the timed stage
        specs[spec.id] = spec
    return specs


def describe_spec(spec: StrategySpec) -> dict[str, Any]:
    port = spec.portfolio
    return {
        "id": spec.id,
        "score": spec.signal.score,
        "long_top": port.long.top,
        "short_top": port.short.top,
        "weighting": port.weighting,
        "rebalance_every": spec.rebalance.every,
        "execution_price": spec.execution.price,
        "side": spec.side,
    }


def world_spec(specs: dict[str, StrategySpec]) -> WorldSpec:
    """A world shaped like worlds/core_equity.yaml whose strategies are the benchmark ids."""
    ids = sorted(specs)
    n_side = {side: sum(s.side == side for s in specs.values()) for side in ("long", "short", "long_short")}
    total = min(3, len(ids))
    by_side = {side: min(q, n_side[side]) for side, q in (("long", 2), ("long_short", 1)) if n_side[side]}
    return WorldSpec.model_validate(
        {
            "id": "bench_world",
            "description": "benchmark world (core_equity shape)",
            "owners": ["benchmarks"],
            "strategies": {"ids": ids},
            "windows": {"short": "20d", "mid": "60d", "long": "252d"},
            "data_currency": {"max_lag": "3d", "min_history": "252d"},
            "stages": {
                "backtest": {"gates": {"and": ["sharpe_long >= 0.3", "max_dd_long <= 0.35"]}},
                "paper": {"min_days": "20d", "gates": {"and": ["sharpe_paper >= 0.0", "max_dd_mid <= 0.25"]}},
                "live": {"gates": {"and": ["sharpe_long >= 0.0", "max_dd_long <= 0.45"]}},
            },
            "selection": {
                "score": "sharpe_mid + 0.1 * hit_rate_long - 0.2 * ulcer_mid",
                "topk": {"total": total, "by_side": by_side},
                "correlation": {"max_pairwise": 0.9, "window": "mid"},
                "hysteresis": {"promote_after": 3, "demote_after": 5, "min_dwell": "10d"},
            },
            "allocation": {
                "method": "inverse_vol",
                "max_weight": 0.6,
                "gross_budget": {"long": 1.0, "short": 1.0, "long_short": 0.5},
            },
            "rules": {
                "data_currency": {"severity": "blocking", "owner": "ops"},
                "gates": {"severity": "soft", "owner": "quant"},
            },
            "on_missing_metric": "fail",
        }
    )


def panel_matrix(
    df: pl.DataFrame, value: str, row_of: dict[dt.date, int], col_of: dict[str, int]
) -> np.ndarray:
    """(T, N) float matrix of a long (date, symbol, value) frame; NaN where a (date, symbol) is absent."""
    out = np.full((len(row_of), len(col_of)), np.nan)
    rows = df.get_column("date").replace_strict(row_of, return_dtype=pl.Int64).to_numpy()
    cols = df.get_column("symbol").replace_strict(col_of, return_dtype=pl.Int64).to_numpy()
    out[rows, cols] = df.get_column(value).cast(pl.Float64).fill_null(np.nan).to_numpy()
    return out


# ------------------------------------------------------------------------------------------ machine
def _rss_mb() -> float | None:
    """Current resident set size (MB) from /proc (Linux); None elsewhere."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None


def _maxrss_mb() -> float:
    """Peak RSS of the process so far (MB); ru_maxrss is KB on Linux, bytes on macOS."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def source_fingerprint() -> dict[str, Any]:
    """sha256 over the quantlab package sources (path + bytes) and their newest mtime: ties the figures to
    the code measured (the working tree may differ from any commit)."""
    import quantlab

    root = Path(quantlab.__file__).resolve().parent
    digest, newest, count = hashlib.sha256(), 0.0, 0
    for path in sorted(root.rglob("*.py")):
        data = path.read_bytes()
        digest.update(str(path.relative_to(root)).encode() + b"\0" + data)
        newest = max(newest, path.stat().st_mtime)
        count += 1
    return {
        "path": str(root),
        "files": count,
        "sha256": digest.hexdigest()[:16],
        "newest_mtime": dt.datetime.fromtimestamp(newest, dt.UTC).isoformat(timespec="seconds"),
    }


def machine_info() -> dict[str, Any]:
    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    mem_total = None
    with contextlib.suppress(OSError, ValueError, IndexError), open("/proc/meminfo") as fh:
        mem_total = round(int(fh.readline().split()[1]) / 2**20, 1)  # kB -> GB
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = None
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "cpu_usable": usable,
        "memory_total_gb": mem_total,
        "polars_threads": pl.thread_pool_size(),
        "polars_max_threads_env": os.environ.get("POLARS_MAX_THREADS"),
        "packages": versions,
        "loadavg_start": loadavg(),
    }


# -------------------------------------------------------------------------------------------- timing
class StageTimeout(Exception):
    """Raised by the SIGALRM guard when a stage overruns its hard limit."""


@contextlib.contextmanager
def alarm(seconds: float | None) -> Iterator[None]:
    """Raise StageTimeout in the main thread after `seconds` (no-op without SIGALRM or for None)."""
    if not seconds or not hasattr(signal, "SIGALRM"):
        yield
        return

    def _raise(signum: int, frame: Any) -> None:
        raise StageTimeout(f"stage exceeded the hard limit of {seconds:.0f} s")

    old = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


class Bench:
    """Runs stages (repeat times each), records timings / rows / memory, never lets a stage abort the run."""

    def __init__(self, repeat: int, out: Path, report: dict[str, Any]) -> None:
        self.repeat = repeat
        self.out = out
        self.report = report
        self.stages: list[dict[str, Any]] = report["stages"]
        self.markdown = False  # also print the markdown table at the end

    def save(self) -> None:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.report, indent=2, default=str) + "\n")
        tmp.replace(self.out)

    def skip(self, key: str, title: str, reason: str) -> None:
        print(f"[{key}] {title}: skipped ({reason})", flush=True)
        self.stages.append({"key": key, "title": title, "status": "skipped", "error": reason})
        self.save()

    def run(
        self,
        key: str,
        title: str,
        fn: Callable[[dict[str, Any]], Any],
        *,
        measures: str,
        rows_in: int | None = None,
        rows_out: Callable[[Any], int | None] | None = None,
        notes: list[str] | None = None,
        repeat: int | None = None,
        hard_limit: float | None = None,
    ) -> Any:
        """Time `fn(extra)` `repeat` times; return the last output (None on error).

        `fn` may fill `extra` (a fresh dict per run) with per-item timings or details; the extra of the best
        run is kept. `rows_out(output)` counts the output rows.
        """
        repeat = repeat or self.repeat
        rec: dict[str, Any] = {
            "key": key,
            "title": title,
            "measures": measures,
            "status": "ok",
            "rows_in": rows_in,
            "notes": list(notes or []),
            "loadavg_before": loadavg(),
        }
        self.stages.append(rec)
        seconds, cpu, extras, out = [], [], [], None
        maxrss0 = _maxrss_mb()
        rss0 = _rss_mb()
        try:
            for i in range(repeat):
                print(f"[{key}] {title}: run {i + 1}/{repeat} ...", end="", flush=True)
                out = None  # let the previous output go before measuring the next run
                gc.collect()
                extra: dict[str, Any] = {}
                c0, t0 = time.process_time(), time.perf_counter()
                with alarm(hard_limit):
                    out = fn(extra)
                t1, c1 = time.perf_counter(), time.process_time()
                seconds.append(t1 - t0)
                cpu.append(c1 - c0)
                extras.append(extra)
                print(f" {t1 - t0:.3f} s (cpu {c1 - c0:.3f} s)", flush=True)
        except Exception as exc:  # noqa: BLE001 - a failing stage is a result, not a crash
            print(f" FAILED: {type(exc).__name__}: {exc}", flush=True)
            rec["status"] = "error"
            rec["error"] = f"{type(exc).__name__}: {exc}"
            rec["traceback"] = traceback.format_exc(limit=8)
            out = None
        rec["seconds_all"] = [round(s, 4) for s in seconds]
        rec["seconds_best"] = round(min(seconds), 4) if seconds else None
        rec["cpu_seconds_all"] = [round(s, 4) for s in cpu]
        if extras:
            best = extras[int(np.argmin(seconds))]
            rec.update(best)
        if out is not None and rows_out is not None:
            try:
                rec["rows_out"] = rows_out(out)
            except Exception as exc:  # noqa: BLE001
                rec["rows_out"] = None
                rec["notes"].append(f"rows_out failed: {exc}")
        rss1 = _rss_mb()
        rec["peak_rss_delta_mb"] = round(_maxrss_mb() - maxrss0, 1)
        rec["peak_rss_after_mb"] = round(_maxrss_mb(), 1)
        rec["rss_delta_mb"] = round(rss1 - rss0, 1) if rss0 is not None and rss1 is not None else None
        self.save()
        return out


def lap(extra: dict[str, Any], key: str, name: str, t0: float) -> float:
    """Record the seconds since t0 under extra[key][name]; return now."""
    now = time.perf_counter()
    extra.setdefault(key, {})[name] = round(now - t0, 4)
    return now


# ---------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--symbols", type=int, default=500, help="synthetic symbols (default 500)")
    p.add_argument("--years", type=int, default=20, help="years of history ending 2025-12-31 (default 20)")
    p.add_argument("--strategies", type=int, default=10, help="number of strategies K (default 10)")
    p.add_argument("--seed", type=int, default=7, help="synthetic data seed (default 7)")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="result JSON (default benchmarks/results/bench_<symbols>x<years>y.json)",
    )
    p.add_argument(
        "--repeat", type=int, default=1, help="runs per stage; best and all are reported (default 1)"
    )
    p.add_argument(
        "--markdown", action="store_true", help="also print the table as markdown (for the README)"
    )
    p.add_argument(
        "--curator-only",
        action="store_true",
        help="stop after the curator stages (1, 2, 2b, 2c); results go to bench_curator_<...>.json",
    )
    p.add_argument(
        "--stage-budget",
        type=float,
        default=60.0,
        help="seconds a world stage may take at full range before a subset is used (default 60)",
    )
    args = p.parse_args(argv)
    if args.symbols < 1 or args.years < 1 or args.strategies < 1 or args.repeat < 1 or args.seed < 0:
        p.error("--symbols, --years, --strategies and --repeat must be >= 1, --seed >= 0")
    if args.out is None:
        prefix = "bench_curator" if args.curator_only else "bench"
        args.out = RESULTS / f"{prefix}_{args.symbols}x{args.years}y.json"
    return args


def main(argv: list[str] | None = None) -> int:  # noqa: C901 - one stage after another reads best flat
    args = parse_args(argv)
    end = END
    start = dt.date(end.year - args.years, end.month, end.day)
    days = calendar.sessions(start, end)
    specs = strategy_specs(args.strategies, args.symbols)
    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "benchmark": "quantlab pure-stage benchmark (no Dagster, no DuckDB)",
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "workload": {
            "symbols": args.symbols,
            "years": args.years,
            "start": start.isoformat(),
            "end": end.isoformat(),
            "first_session": days[0].isoformat() if days else None,
            "last_session": days[-1].isoformat() if days else None,
            "sessions": len(days),
            "sessions_simulated": len(calendar.sessions(calendar.CALENDAR_START, end)),
            "seed": args.seed,
            "repeat": args.repeat,
            "n_strategies": len(specs),
            "strategies": [describe_spec(s) for s in specs.values()],
            "kpi_windows_metrics": ASOF_WINDOWS,
            "kpi_windows_table": bt_kpis.KPI_WINDOWS,
        },
        "machine": machine_info(),
        "quantlab_source": source_fingerprint(),
        "notes": [
            "Wall-clock seconds (time.perf_counter) per stage; best of --repeat runs, all runs listed; "
            "cpu_seconds_all is process CPU time (all threads), so cpu > wall means parallel work.",
            "peak_rss_delta_mb is the growth of the process high-water mark (getrusage ru_maxrss) during "
            "the stage: 0 when the stage stayed under an earlier peak, so it is a lower bound of its extra "
            "memory.",
            "Stages run in chain order on the previous stage's output; a failed stage records its error and "
            "the stages needing its output are skipped.",
        ],
        "stages": [],
    }
    bench = Bench(args.repeat, args.out, report)
    bench.markdown = args.markdown
    print(
        f"quantlab benchmark: {args.symbols} symbols x {len(days)} sessions ({start} .. {end}), "
        f"{len(specs)} strategies, repeat {args.repeat} -> {args.out}",
        flush=True,
    )
    bench.save()
    n_cells = args.symbols * len(days)

    # 1. data ------------------------------------------------------------------------------------
    bars = bench.run(
        "1",
        "synthetic_ohlcv",
        lambda extra: synthetic_ohlcv(args.symbols, start, end, args.seed),
        measures="quantlab.curator.synthetic.synthetic_ohlcv(n, start, end, seed): GARCH simulation from the "
        "1990 calendar epoch, then the requested window",
        rows_in=n_cells,
        rows_out=lambda df: df.height,
        notes=[
            "rows_in = symbols x sessions requested; the simulation always starts at 1990-01-02, so its "
            "cost grows with the end date, not with --years"
        ],
    )
    if bars is None:
        bench.skip("2-8", "everything else", "no data")
        return finish(bench)

    # 2. quality gate ----------------------------------------------------------------------------
    first_dates = dict(bars.group_by("symbol").agg(pl.col("date").min()).iter_rows())
    bench.run(
        "2",
        "quality_issues",
        lambda extra: quality_issues(bars, days, first_dates),
        measures="quantlab.curator.quality.quality_issues(bars, sessions, expected): the seven quality rules",
        rows_in=bars.height,
        rows_out=lambda df: df.height,
        notes=["first_dates (each symbol's first bar date) built outside the timing"],
    )

    bench.run(
        "2b",
        "anomaly score_bars",
        lambda extra: score_bars(bars, days[0], days[-1], AnomalySettings()),
        measures="quantlab.curator.anomaly.score_bars(bars, start, end, defaults): features, one "
        "IsolationForest per month fit on the trailing 252 sessions, every bar scored",
        rows_in=bars.height,
        rows_out=lambda df: df.height,
        notes=["default settings: 32 trees x 256 samples, n_jobs=2 worker processes (joblib/loky)"],
    )
    bench_ingest(bench, bars, days)
    if args.curator_only:
        return finish(bench)

    # 3. features and labels ---------------------------------------------------------------------
    features = bench.run(
        "3a",
        "compute_features",
        lambda extra: compute_features(bars),
        measures="quantlab.features.library.compute_features(bars): all 18 features",
        rows_in=bars.height,
        rows_out=lambda df: df.height,
    )
    bench.run(
        "3b",
        "compute_labels",
        lambda extra: compute_labels(bars),
        measures="quantlab.features.labels.compute_labels(bars): all 5 forward labels, long format",
        rows_in=bars.height,
        rows_out=lambda df: df.height,
    )

    # 4. targets ---------------------------------------------------------------------------------
    targets: dict[str, pl.DataFrame] | None = None
    if features is None:
        bench.skip("4", "strategy_targets", "no features")
    else:

        def run_targets(extra: dict[str, Any]) -> dict[str, pl.DataFrame]:
            out, t0 = {}, time.perf_counter()
            for sid, spec in specs.items():
                out[sid] = strategy_targets(features, spec)
                t0 = lap(extra, "per_strategy_seconds", sid, t0)
            return out

        targets = bench.run(
            "4",
            "strategy_targets x K",
            run_targets,
            measures="quantlab.strategy_lab.targets.strategy_targets(features, spec) for every strategy",
            rows_in=features.height * len(specs),
            rows_out=lambda d: sum(df.height for df in d.values()),
            notes=[
                "rows_in = feature rows x K (each strategy scores the whole frame)",
                "specs built and their score expressions parsed outside the timing",
            ],
        )

    # 5. backtest --------------------------------------------------------------------------------
    returns_long: pl.DataFrame | None = None
    engine_results: dict[str, Any] | None = None
    inception: dict[str, dt.date | None] = {}
    if targets is None:
        bench.skip("5a", "run_backtest", "no targets")
        bench.skip("5b", "backtest_strategy", "no targets")
    else:
        for sid, tgt in targets.items():
            nz = tgt.filter(pl.col("weight") != 0)
            inception[sid] = nz.get_column("date").min() if nz.height else None
        # matrices built once, outside the timing: one (T, N) open/close pair, one targets matrix per strategy
        bar_dates = sorted(bars.get_column("date").unique().to_list())
        symbols = sorted(bars.get_column("symbol").unique().to_list())
        row_of = {d: i for i, d in enumerate(bar_dates)}
        col_of = {s: j for j, s in enumerate(symbols)}
        t_build = time.perf_counter()
        open_m = panel_matrix(bars, "open", row_of, col_of)
        close_m = panel_matrix(bars, "close", row_of, col_of)
        target_m = {
            sid: np.nan_to_num(panel_matrix(t, "weight", row_of, col_of), nan=0.0)
            for sid, t in targets.items()
        }
        sidx = calendar.session_index(bar_dates)
        rebalance = {sid: sidx % spec.rebalance.every == 0 for sid, spec in specs.items()}
        configs = {
            sid: ExecutionConfig(
                price=spec.execution.price,
                lag=spec.execution.lag,
                fee_bps=spec.costs.fee_bps,
                slippage_bps=spec.costs.slippage_bps,
            )
            for sid, spec in specs.items()
        }
        build_s = time.perf_counter() - t_build

        def run_engine(extra: dict[str, Any]) -> dict[str, Any]:
            out, t0 = {}, time.perf_counter()
            for sid in specs:
                out[sid] = run_backtest(open_m, close_m, target_m[sid], rebalance[sid], configs[sid])
                t0 = lap(extra, "per_strategy_seconds", sid, t0)
            return out

        engine_results = bench.run(
            "5a",
            "run_backtest x K",
            run_engine,
            measures="quantlab.backtest.engine.run_backtest(open, close, targets, rebalance, cfg) on "
            "prebuilt (T, N) matrices, every strategy",
            rows_in=open_m.size * len(specs),
            rows_out=lambda d: sum(r.net.size + r.trade_day.size for r in d.values()),
            notes=[
                f"(T, N) = {open_m.shape} open/close/targets matrices built ONCE outside the timing "
                f"({build_s:.2f} s, not included); rebalance mask = session_index(dates) % every == 0",
                "rows_in = T x N cells x K; rows_out = T day rows x K + trades",
            ],
        )

        ohlcv_in = bars.select("symbol", "date", "open", "close")  # the columns the asset reads
        tgt_in = {sid: t.select("date", "symbol", "weight") for sid, t in targets.items()}
        lo, hi = bar_dates[0], bar_dates[-1]
        budget = args.stage_budget
        subset: list[str] = []  # strategies timed: fixed by the first run, reused by the repeats

        def run_wrapper(extra: dict[str, Any]) -> dict[str, tuple[pl.DataFrame, pl.DataFrame]]:
            out, t_start = {}, time.perf_counter()
            t0 = t_start
            for sid in subset or specs:
                if not subset and out and t0 - t_start > budget:
                    break  # over budget: the remaining strategies are not timed (see the notes)
                out[sid] = backtest_strategy(ohlcv_in, tgt_in[sid], specs[sid], lo, hi, inception[sid])
                t0 = lap(extra, "per_strategy_seconds", sid, t0)
            subset[:] = list(out)
            return out

        wrapped = bench.run(
            "5b",
            "backtest_strategy x K",
            run_wrapper,
            measures="quantlab.backtest.run.backtest_strategy(ohlcv, targets, spec, start, end, inception): "
            "long frames -> (T, N) matrices (pivots) -> engine -> returns and trades frames, every strategy",
            rows_in=ohlcv_in.height * len(specs) + sum(t.height for t in tgt_in.values()),
            rows_out=lambda d: sum(r.height + t.height for r, t in d.values()),
            notes=[
                "matrix building from the long frames IS included here (compare with 5a)",
                "rows_in = bar rows x K + target rows; rows_out = return rows + trade rows",
            ],
        )
        rec5b = bench.stages[-1]
        if wrapped is not None and len(wrapped) < len(specs):
            m = len(wrapped)
            est = rec5b["seconds_best"] * len(specs) / m
            rec5b.update(
                subset={
                    "strategies_timed": m,
                    "of": len(specs),
                    "ids": list(wrapped),
                    "estimated_full_seconds": round(est, 2),
                }
            )
            rec5b["rows_in"] = ohlcv_in.height * m + sum(tgt_in[sid].height for sid in wrapped)
            rec5b["notes"].append(
                f"SUBSET: the first {m} of {len(specs)} strategies (the loop stops once {budget:g} s have "
                f"passed); all K estimated at {est:.1f} s. The other strategies' returns for stages 6-8 come "
                "from the engine (5a), rows after inception, which is what backtest_strategy returns"
            )
            report["workload"]["trades"] = {sid: t.height for sid, (_, t) in wrapped.items()}
        # returns for stages 6-8: the wrapper's rows, else the engine's arrays (rows after inception)
        frames, trade_frames = [], []
        day = np.array(bar_dates, dtype="datetime64[D]")
        checks, from_engine = {}, []
        for sid in specs:
            res = engine_results.get(sid) if engine_results is not None else None
            if wrapped is not None and sid in wrapped:
                ret, trade_rows = wrapped[sid]
                trade_frames.append(trade_rows.select("date", "strategy"))
                if res is not None and ret.height:  # consistency: wrapper vs engine on prebuilt matrices
                    pos = np.searchsorted(day, ret.get_column("date").to_numpy().astype("datetime64[D]"))
                    checks[sid] = float(np.max(np.abs(ret.get_column("net").to_numpy() - res.net[pos])))
            elif res is not None and inception[sid] is not None:
                keep = day > np.datetime64(inception[sid])
                ret = pl.DataFrame(
                    {
                        "date": day[keep],
                        "strategy": sid,
                        "net": res.net[keep],
                        "turnover": res.turnover[keep],
                        "long_ret": res.long_ret[keep],
                        "short_ret": res.short_ret[keep],
                    }
                ).with_columns(pl.col("date").cast(pl.Date))
                trade_frames.append(
                    pl.DataFrame({"date": day[res.trade_day], "strategy": sid}).with_columns(
                        pl.col("date").cast(pl.Date)
                    )
                )
                from_engine.append(sid)
            else:
                continue
            if ret.height:
                frames.append(ret.select("date", "strategy", "net", "turnover", "long_ret", "short_ret"))
        returns_long = pl.concat(frames) if frames else None
        trade_counts = pl.concat(trade_frames).group_by("date", "strategy").len("n") if trade_frames else None
        if from_engine:
            report["notes"].append(
                f"strategy returns for stages 6-8 of {from_engine} come from the engine "
                "(5a) arrays, rows after inception (not from backtest_strategy)"
            )
        if checks:
            rec5b["check_max_abs_net_diff_vs_engine"] = checks
            bench.save()

    # 6. as-of KPIs ------------------------------------------------------------------------------
    kpi_table: pl.DataFrame | None = None
    if returns_long is None:
        bench.skip("6a", "metrics.asof_kpis", "no strategy returns")
        bench.skip("6b", "backtest.kpis.asof_kpis", "no strategy returns")
    else:
        _, ret_ids, net_m = bt_kpis.returns_matrix(returns_long, "net")
        _, _, turn_m = bt_kpis.returns_matrix(returns_long, "turnover")
        bench.run(
            "6a",
            "metrics.asof_kpis",
            lambda extra: metrics.asof_kpis(net_m, turn_m, ASOF_WINDOWS),
            measures="quantlab.metrics.asof_kpis(net (T, K), turnover (T, K), {20d, 60d, 252d, full})",
            rows_in=net_m.size,
            rows_out=lambda d: sum(a.size for a in d.values()),
            notes=[
                f"(T, K) = {net_m.shape} built from the returns frame outside the timing (NaN before "
                "inception); rows_out = output cells over all keys"
            ],
        )
        kpi_in = returns_long  # the columns the asset reads
        kpi_table = bench.run(
            "6b",
            "backtest.kpis.asof_kpis",
            lambda extra: bt_kpis.asof_kpis(kpi_in, trade_counts, days[0], days[-1]),
            measures="quantlab.backtest.kpis.asof_kpis(returns, trade_counts, start, end): pivots, metrics.asof_kpis over "
            "the table windows (20d/60d/126d/252d/full), long KPI table",
            rows_in=kpi_in.height,
            rows_out=lambda df: df.height,
        )

    # 7. supervisor ------------------------------------------------------------------------------
    approvals: dict[str, pl.DataFrame] | None = None
    if targets is None or kpi_table is None:
        bench.skip("7", "supervise", "no targets or no KPI table")
    else:
        sup = SupervisorSpec()
        limits = {sid: sup.for_strategy(spec.risk) for sid, spec in specs.items()}
        full = kpi_table.filter(pl.col("window") == "full").select("date", "strategy", "max_dd")
        kp_in = {sid: full.filter(pl.col("strategy") == sid) for sid in specs}
        tg_in = {sid: t.select("date", "strategy", "symbol", "weight", "score") for sid, t in targets.items()}

        def run_approve(extra: dict[str, Any]) -> dict[str, pl.DataFrame]:
            out, t0 = {}, time.perf_counter()
            for sid in specs:
                out[sid] = supervise(tg_in[sid], kp_in[sid], limits[sid]).approvals
                t0 = lap(extra, "per_strategy_seconds", sid, t0)
            return out

        approvals = bench.run(
            "7",
            "supervise x K",
            run_approve,
            measures="quantlab.supervisor.rules.supervise(targets, kpis_full, limits) per strategy with "
            "SupervisorSpec().for_strategy(spec.risk) (built-in default rules)",
            rows_in=sum(t.height for t in tg_in.values()),
            rows_out=lambda d: sum(df.height for df in d.values()),
            notes=["per-strategy inputs (targets, full-window max_dd) split outside the timing"],
        )
        if approvals is not None:
            stats = {}
            for sid, df in approvals.items():
                by_day = df.group_by("date").agg(pl.col("approved").all())
                stats[sid] = {
                    "rows": df.height,
                    "dates": by_day.height,
                    "rejected_dates": int((~by_day.get_column("approved")).sum()),
                }
            report["workload"]["supervisor"] = stats

    # 8. world -----------------------------------------------------------------------------------
    if kpi_table is None or returns_long is None:
        for key, title in (("8a", "evaluate_world"), ("8b", "allocate_world")):
            bench.skip(key, title, "no KPI table or no strategy returns")
        return finish(bench)
    run_world(bench, specs, kpi_table, returns_long, bars, approvals, days, args.stage_budget)
    return finish(bench)


def bench_ingest(bench: Bench, bars: pl.DataFrame, days: list[dt.date]) -> None:
    """Stage 2c, the one stage on the warehouse path: incremental ingest of the last session.

    Every earlier session is stored in a temporary DuckDB file outside the timing; the timed call is the
    `ohlcv` asset's own `run_ohlcv` for the last session from an in-memory source (network aside): read the
    stored first dates and previous bars, continue the adjusted history, run the quality rules, write the
    partition, its quality issues and the symbol registry.
    """
    day = days[-1]
    with tempfile.TemporaryDirectory() as tmp:
        warehouse = Warehouse(database=str(Path(tmp) / "bench.duckdb"))
        t0 = time.perf_counter()
        stored = bars.filter(pl.col("date") < day)
        warehouse.replace("ohlcv", stored, days[0], days[-2])
        setup = time.perf_counter() - t0
        source = FrameSource(bars.filter(pl.col("date") >= days[-2]))
        bench.run(
            "2c",
            "run_ohlcv (ingest one day)",
            lambda extra: run_ohlcv(warehouse, source, day, day),
            measures="quantlab.assets.curator.run_ohlcv(warehouse, source, day, day) on a DuckDB file holding "
            "the history: incremental ingest of one session",
            rows_in=stored.height,
            rows_out=lambda run: run.metadata["rows"],
            notes=[
                f"rows_in = bars already stored; storing them took {setup:.1f} s outside the timing",
                "repeated runs re-write the same partition (idempotent replace)",
            ],
        )


def run_world(
    bench: Bench,
    specs: dict[str, StrategySpec],
    kpi_table: pl.DataFrame,
    returns_long: pl.DataFrame,
    bars: pl.DataFrame,
    approvals: dict[str, pl.DataFrame] | None,
    days: list[dt.date],
    budget: float,
) -> None:
    """Stage 8: evaluate_world, then allocate_world (allocation, world book, risk engine, track) on its decisions.

    Probes over the last PROBE_SESSIONS and twice as many sessions fit t ~ sessions^p per sub-stage (p in
    [1, 2]) and extrapolate to the full range; if one sub-stage would exceed `budget`, all three run on the
    last sessions that fit (at least the larger probe) and the JSON says so. A SIGALRM guard (4 x budget)
    on evaluate_world backs the estimate up.
    """
    try:
        world = world_spec(specs)
        members = world.members(specs)
        sides = [specs[m].side for m in members]
        bar_dates = bars.get_column("date").unique().to_list()
        net_in = returns_long.select("date", "strategy", "net")
        appr = (
            pl.concat(
                [
                    df.select("date", "strategy", "symbol", "approved_weight", "approved")
                    for df in approvals.values()
                ]
            )
            if approvals is not None
            else pl.DataFrame(
                schema={
                    "date": pl.Date,
                    "strategy": pl.String,
                    "symbol": pl.String,
                    "approved_weight": pl.Float64,
                    "approved": pl.Boolean,
                }
            )
        )
        rejected_all = (
            appr.group_by("date", "strategy")
            .agg(pl.col("approved").all())
            .filter(~pl.col("approved"))
            .select("date", "strategy")
        )
        books_all = appr.select("date", "strategy", "symbol", "approved_weight")
    except Exception as exc:  # noqa: BLE001
        for key, title in (("8a", "evaluate_world"), ("8b", "allocate_world")):
            bench.skip(key, title, f"world setup failed: {type(exc).__name__}: {exc}")
        return

    def inputs(lo: dt.date, hi: dt.date) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
        """The asset's inputs for a range: KPI rows, rejections and approved books in [lo, hi]."""
        kp = kpi_table.filter(pl.col("date").is_between(lo, hi) & pl.col("strategy").is_in(members))
        in_range = pl.col("date").is_between(lo, hi)
        return kp, rejected_all.filter(in_range), books_all.filter(in_range)

    def allocate(
        kp: pl.DataFrame, dec: pl.DataFrame, rej: pl.DataFrame, books: pl.DataFrame, lo: dt.date, hi: dt.date
    ):
        vol_col = f"annual_volatility_{world.allocation.vol_window}"
        vol = metric_panel(world, kp, members).select("date", "strategy", pl.col(vol_col).alias("vol"))
        net = net_in.filter(pl.col("date").is_between(history_start(world, lo), hi))
        return allocate_world(
            world, members, sides, calendar.sessions(lo, hi), dec, vol, net, books, rej, WorldState()
        )

    def pipeline(lo: dt.date, hi: dt.date) -> dict[str, float]:
        kp, rej, books = inputs(lo, hi)
        net = net_in.filter(pl.col("date") <= hi)
        t0 = time.perf_counter()
        prev = tuple(State() for _ in members)
        dec = evaluate_world(world, members, sides, kp, net, bar_dates, prev, lo, hi).decisions
        t1 = time.perf_counter()
        allocate(kp, dec, rej, books, lo, hi)
        t2 = time.perf_counter()
        return {"evaluate_world": t1 - t0, "allocate_world": t2 - t1}

    # probe on the last n1 and 2 n1 sessions; per sub-stage, fit t ~ n^p (p clipped to [1, 2]: the loops are
    # linear in the sessions, a per-day scan of a per-range list is quadratic) and extrapolate
    n_full = len(days)
    n1 = min(PROBE_SESSIONS, n_full)
    sizes = [n1, 2 * n1] if 4 * n1 <= n_full else [n1]
    probe: dict[str, Any] = {"sessions": sizes, "seconds": {}, "budget_seconds": budget}
    n_use = n_full
    try:
        for n in sizes if n_full > 2 * n1 else []:  # a short range is simply run in full
            print(f"[8] probing the world stage on the last {n} sessions ...", end="", flush=True)
            gc.collect()
            with alarm(4 * budget):
                secs = pipeline(days[-n], days[-1])
            probe["seconds"][n] = {k: round(v, 4) for k, v in secs.items()}
            print(" " + ", ".join(f"{k} {v:.2f} s" for k, v in secs.items()), flush=True)
        if probe["seconds"]:
            n2 = sizes[-1]
            t2 = probe["seconds"][n2]
            t1 = probe["seconds"][sizes[0]]
            est, fit = {}, {}
            for k, v in t2.items():
                two = len(sizes) > 1 and t1[k] > 1e-3 and v > 0  # too fast to fit: assume linear
                fit[k] = float(np.clip(np.log2(v / t1[k]), 1.0, 2.0)) if two else 1.0
                est[k] = round(v * (n_full / n2) ** fit[k], 2)
            probe["exponent"] = {k: round(v, 2) for k, v in fit.items()}
            probe["estimated_full_seconds"] = est
            print(
                f"[8] full range ({n_full} sessions) estimated at "
                + ", ".join(f"{k} {v:.1f} s" for k, v in est.items()),
                flush=True,
            )
            if max(est.values()) > budget:
                fits = [n2 * (budget / max(t2[k], 1e-9)) ** (1.0 / fit[k]) for k in t2]
                n_use = int(min(n_full, max(n2, min(fits))))
    except Exception as exc:  # noqa: BLE001
        print(f" probe failed: {type(exc).__name__}: {exc}", flush=True)
        probe["error"] = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, StageTimeout):  # a probe already overran: the smallest size is all that fits
            n_use = n1
    bench.report["world_probe"] = probe

    def attempt(n: int) -> bool:
        """Run 8a-8b on the last n sessions; False if evaluate_world hit the hard limit."""
        lo, hi = days[-n], days[-1]
        kp, rej, books = inputs(lo, hi)
        net = net_in.filter(pl.col("date") <= hi)
        prev = tuple(State() for _ in members)
        notes = []
        if n < n_full:
            notes.append(
                f"SUBSET: last {n} of {n_full} sessions ({lo} .. {hi}); at the full range the "
                f"probe estimated {probe.get('estimated_full_seconds', probe.get('error'))} s (budget "
                f"{budget:g} s per stage)"
            )
        base = [
            "members: all K strategies; previous states: tuple(State() for _ in members); KPI rows and "
            "rejections restricted to the range outside the timing"
        ]
        decisions = bench.run(
            "8a",
            "evaluate_world",
            lambda extra: evaluate_world(world, members, sides, kp, net, bar_dates, prev, lo, hi),
            measures="quantlab.world.evaluate.evaluate_world(...): per-session snapshots, decide(), rule "
            "rows",
            rows_in=kp.height,
            rows_out=lambda t: t[0].height + t[1].height,
            notes=notes + base + ["rows_in = KPI rows; rows_out = decision rows + rule-result rows"],
            hard_limit=4 * budget,
        )
        rec = bench.stages[-1]
        rec["sessions"] = n
        if decisions is None:
            return not rec.get("error", "").startswith("StageTimeout")
        dec = decisions[0]
        rec["live_decision_rows"] = int((dec.get_column("stage") == "live").sum())
        rec["selected_rows"] = int(dec.get_column("selected").sum())

        bench.run(
            "8b",
            "allocate_world",
            lambda extra: allocate(kp, dec, rej, books, lo, hi),
            measures="quantlab.world.evaluate.metric_panel(...) + quantlab.world.allocate.allocate_world(world, "
            "members, sides, days, decisions, vol, returns, books, rejected, WorldState()): allocation, world "
            "book, risk engine and track",
            rows_in=dec.height + books.height,
            rows_out=lambda run: run.allocations.height + run.targets.height + run.returns.height,
            notes=notes
            + [
                f"rejected = {rej.height} (date, strategy) pairs the supervisor rejected in the range",
                "rows_in = decision rows + approved book rows; rows_out = allocation + world book + track rows",
            ],
        )
        bench.stages[-1]["sessions"] = n
        return True

    if not attempt(n_use) and n_use > n1:
        del bench.stages[-1]  # the timed-out run: replace it by a run on the smallest probe size
        bench.report["notes"].append(
            f"evaluate_world over {n_use} sessions hit the hard limit; rerun on {n1}"
        )
        attempt(n1)


def finish(bench: Bench) -> int:
    bench.report["machine"]["loadavg_end"] = loadavg()
    bench.report["machine"]["peak_rss_mb"] = round(_maxrss_mb(), 1)
    ok = [s for s in bench.stages if s.get("status") == "ok"]
    bench.report["total_seconds_best"] = round(sum(s["seconds_best"] for s in ok), 3)
    bench.save()
    print()
    print(format_table(bench.report))
    if bench.markdown:
        print()
        print(format_markdown(bench.report))
    print(f"\nresults: {bench.out}")
    return 0 if all(s.get("status") == "ok" for s in bench.stages) else 1


def format_table(report: dict[str, Any]) -> str:
    w = report["workload"]
    m = report["machine"]
    head = (
        f"{w['symbols']} symbols x {w['sessions']} sessions "
        f"({w['first_session']} .. {w['last_session']}), "
        f"K={w['n_strategies']}, repeat {w['repeat']} | python {m['python']}, {m['cpu_count']} cpu, "
        f"numpy {m['packages']['numpy']}, polars {m['packages']['polars']}, "
        f"load {m.get('loadavg_start')} -> {m.get('loadavg_end')}"
    )
    n_sess = w["sessions"]
    cols = ("stage", "function", "best s", "all s", "rows in", "rows out", "peak RSS +MB", "status")
    rows = []
    for s in report["stages"]:
        runs = s.get("seconds_all") or []
        rows.append(
            (
                s["key"],
                s["title"] + (f" [{s['sessions']} sess]" if s.get("sessions", n_sess) != n_sess else ""),
                f"{s['seconds_best']:.3f}" if s.get("seconds_best") is not None else "-",
                ",".join(f"{x:.2f}" for x in runs) if len(runs) > 1 else "",
                f"{s['rows_in']:,}" if s.get("rows_in") is not None else "-",
                f"{s['rows_out']:,}" if s.get("rows_out") is not None else "-",
                f"{s['peak_rss_delta_mb']:.0f}" if s.get("peak_rss_delta_mb") is not None else "-",
                "ok" if s.get("status") == "ok" else f"{s.get('status')}: {s.get('error', '')[:60]}",
            )
        )
    widths = [max(len(str(r[i])) for r in [cols, *rows]) for i in range(len(cols))]
    right = {2, 3, 4, 5, 6}
    lines = [head, ""]
    for r in [cols, *rows]:
        lines.append(
            "  ".join(
                str(v).rjust(widths[i]) if i in right else str(v).ljust(widths[i]) for i, v in enumerate(r)
            ).rstrip()
        )
        if r is cols:
            lines.append("  ".join("-" * x for x in widths))
    lines.append(
        f"total (ok stages, best): {report['total_seconds_best']:.2f} s; "
        f"process peak RSS {m.get('peak_rss_mb')} MB"
    )
    return "\n".join(lines)


def format_markdown(report: dict[str, Any]) -> str:
    """The stage table as markdown (best seconds; subsets flagged), as in benchmarks/README.md."""
    n_sess = report["workload"]["sessions"]
    lines = [
        "| stage | function | best s | all runs s | rows in | rows out | peak RSS +MB | note |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for s in report["stages"]:
        note = s.get("status", "") if s.get("status") != "ok" else ""
        if s.get("subset"):
            sub = s["subset"]
            note = (
                f"subset: {sub['strategies_timed']} of {sub['of']} strategies "
                f"(all K est. {sub['estimated_full_seconds']:.0f} s)"
            )
        elif s.get("sessions", n_sess) != n_sess:
            note = f"subset: last {s['sessions']} of {n_sess} sessions"
        best = f"{s['seconds_best']:.2f}" if s.get("seconds_best") is not None else "-"
        runs = ", ".join(f"{x:.2f}" for x in s.get("seconds_all") or [])
        rows_in = f"{s['rows_in']:,}" if s.get("rows_in") is not None else "-"
        rows_out = f"{s['rows_out']:,}" if s.get("rows_out") is not None else "-"
        rss = f"{s['peak_rss_delta_mb']:.0f}" if s.get("peak_rss_delta_mb") is not None else "-"
        lines.append(
            f"| {s['key']} | `{s['title']}` | {best} | {runs} | {rows_in} | {rows_out} | {rss} | {note} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
