#!/usr/bin/env python
"""Benchmark of the feature store (issue 5 target: 20 standard features + 3 labels, 500 symbols x 20 years < 1.5 s).

Workload: 500 synthetic symbols x 20 years (2006-01-03 .. 2025-12-31, `synthetic_ohlcv`, seed 7, 2.5 M bars in
(date, symbol) order, as the warehouse returns them), the first 20 features of the library
(`FEATURE_NAMES[:20]`: returns, momentum, volatility, RSI, ATR, moving-average gaps, z-score, volume ratio,
gap, range, cross-sectional ranks and z-scores, beta to the universe, 12-month momentum) and the labels
`fwd_ret_5`, `fwd_dir_5`, `fwd_excess_5`. Timed: `prepare_panel` (validation and ordering, shared),
`compute_features` and `compute_labels` on that panel, best of `--repeat` runs (default 5). Writes
`benchmarks/results/features_500x20y.json`.

    python benchmarks/features.py [--symbols 500] [--years 20] [--repeat 5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import time
from pathlib import Path

import polars as pl
from machine import loadavg

from quantlab.curator.synthetic import synthetic_ohlcv
from quantlab.features.labels import compute_labels
from quantlab.features.library import FEATURE_NAMES, compute_features, prepare_panel

RESULTS = Path(__file__).resolve().parent / "results"
END = dt.date(2025, 12, 31)
FEATURES = FEATURE_NAMES[:20]
LABELS = ("fwd_ret_5", "fwd_dir_5", "fwd_excess_5")
TARGET_SECONDS = 1.5


def run_once(bars: pl.DataFrame) -> dict[str, float]:
    """Seconds of each step of one run (prepare, features, labels) and their total."""
    t0 = time.perf_counter()
    panel = prepare_panel(bars)
    t1 = time.perf_counter()
    features = compute_features(panel, FEATURES)
    t2 = time.perf_counter()
    labels = compute_labels(panel, LABELS)
    t3 = time.perf_counter()
    assert features.height == bars.height and labels.height > 0
    return {
        "prepare_panel": t1 - t0,
        "compute_features": t2 - t1,
        "compute_labels": t3 - t2,
        "total": t3 - t0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--years", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    start = dt.date(END.year - args.years, 1, 3)
    bars = synthetic_ohlcv(args.symbols, start, END, seed=7).sort("date", "symbol")
    runs = [run_once(bars) for _ in range(args.repeat)]
    best = min(runs, key=lambda r: r["total"])
    report = {
        "workload": {
            "symbols": args.symbols,
            "start": start.isoformat(),
            "end": END.isoformat(),
            "bars": bars.height,
            "features": list(FEATURES),
            "labels": list(LABELS),
        },
        "seconds_best": {k: round(v, 3) for k, v in best.items()},
        "seconds_total_all": [round(r["total"], 3) for r in runs],
        "target_seconds": TARGET_SECONDS,
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "polars": pl.__version__,
            "polars_threads": pl.thread_pool_size(),
            "loadavg": loadavg(),
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"features_{args.symbols}x{args.years}y.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    for name, secs in report["seconds_best"].items():
        print(f"{name:<18}{secs:>8.3f} s")
    print(f"all totals: {report['seconds_total_all']}  (target < {TARGET_SECONDS} s); results: {out}")


if __name__ == "__main__":
    main()
