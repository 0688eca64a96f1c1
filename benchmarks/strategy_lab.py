#!/usr/bin/env python
"""Benchmark of a walk-forward model strategy (issue 5 target: < 60 s).

Workload: 100 synthetic symbols x 10 years (2016-01-04 .. 2025-12-31, `synthetic_ohlcv`, seed 7), the
library features and labels, then `quantlab.strategy_lab.model.walk_forward` for a gradient-boosting strategy
(HistGradientBoosting, 50 iterations, depth 3) on the `momentum` feature set, label `fwd_excess_5`, two-year
training window, refitted monthly (every 21 sessions), embargo 5 — every fit from scratch (no model cache).
Writes `benchmarks/results/strategy_lab_100x10y.json`.

    python benchmarks/strategy_lab.py
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import time
from pathlib import Path

from quantlab.curator.synthetic import synthetic_ohlcv
from quantlab.features.labels import compute_labels
from quantlab.features.library import compute_features
from quantlab.features.sets import PRESETS
from quantlab.strategy_lab.model import walk_forward
from quantlab.strategy_lab.spec import StrategySpec

RESULTS = Path(__file__).resolve().parent / "results" / "strategy_lab_100x10y.json"
START, END = dt.date(2016, 1, 4), dt.date(2025, 12, 31)
SPEC = {
    "id": "bench_gbm",
    "universe": {"all": True},
    "signal": {
        "kind": "model",
        "estimator": "gradient_boosting",
        "params": {"max_iter": 50, "max_depth": 3, "learning_rate": 0.05, "min_samples_leaf": 50},
        "features": "momentum",
        "label": "fwd_excess_5",
        "train_window": 504,
        "refit_every": 21,
        "embargo": 5,
        "seed": 7,
    },
    "portfolio": {"long": {"top": 10}, "short": {"top": 10}},
}


def main() -> None:
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    bars = synthetic_ohlcv(100, START, END, seed=7)
    timings["data"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    features = compute_features(bars)
    labels = compute_labels(bars)
    timings["features_and_labels"] = time.perf_counter() - t0
    spec = StrategySpec.model_validate(SPEC)
    t0 = time.perf_counter()
    result = walk_forward(features, labels, spec, PRESETS["momentum"], START, END)
    timings["walk_forward"] = time.perf_counter() - t0
    n_models = sum(m is not None for m in result.fitted.values())
    report = {
        "workload": {"symbols": 100, "start": START.isoformat(), "end": END.isoformat(), "strategy": SPEC},
        "seconds": {k: round(v, 3) for k, v in timings.items()},
        "models_fitted": n_models,
        "target_seconds": 60,
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    for name, secs in report["seconds"].items():
        print(f"{name:<22}{secs:>8.2f} s")
    print(f"models fitted: {n_models}; results: {RESULTS}")


if __name__ == "__main__":
    main()
