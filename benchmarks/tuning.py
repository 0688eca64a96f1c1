#!/usr/bin/env python
"""Benchmark of a tuning study (issue 9 target: 100 trials, 100 symbols x 10 years, 5 folds, < 60 s on 2 cores).

Workload: 100 synthetic symbols x 10 years (2016-01-04 .. 2025-12-31, `synthetic_ohlcv`, seed 7) and the
library features (prepared outside the timing), then `quantlab.tuning.study.run_study` for a rule-based
strategy (score `mom_60 - 0.5 * vol_60`, long leg, open execution at lag 1, 1 + 5 bps costs) over three
parameters (`portfolio.long.top` 5..20, `rebalance.every` 1..21, `portfolio.weighting` equal|inverse_vol):
100 trials, TPE (seed 7), 5 walk-forward folds, each trial scored on five fold backtests, every trial stored in
a SQLite Optuna storage (the default storage kind) in a temporary directory. `--workers N` runs N trials at
once (threads). Writes `benchmarks/results/tuning_100x10y.json` (or `--out`).

    python benchmarks/tuning.py [--trials 100] [--workers 1]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import optuna
from machine import loadavg

from quantlab.calendar import sessions
from quantlab.curator.synthetic import synthetic_ohlcv
from quantlab.features.library import compute_features
from quantlab.strategy_lab.spec import StrategySpec
from quantlab.tuning.objective import BAR_COLUMNS, TuningData
from quantlab.tuning.study import StudySettings, run_study, study_folds, trials_frame

RESULTS = Path(__file__).resolve().parent / "results" / "tuning_100x10y.json"
START, END = dt.date(2016, 1, 4), dt.date(2025, 12, 31)
SPEC = {
    "id": "bench_tuning",
    "universe": {"all": True},
    "signal": {"score": "mom_60 - 0.5 * vol_60"},
    "portfolio": {"long": {"top": 10}, "max_weight": 0.2},
    "rebalance": {"every": 5},
    "costs": {"fee_bps": 1.0, "slippage_bps": 5.0},
    "tuning": {
        "params": {
            "portfolio.long.top": {"type": "int", "low": 5, "high": 20},
            "rebalance.every": {"type": "int", "low": 1, "high": 21},
            "portfolio.weighting": {"type": "choice", "choices": ["equal", "inverse_vol"]},
        },
        "folds": 5,
        "seed": 7,
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    bars = synthetic_ohlcv(100, START, END, seed=7)
    features = compute_features(bars)
    timings["data_and_features"] = time.perf_counter() - t0
    spec = StrategySpec.model_validate(SPEC)
    data = TuningData(features, bars.select(BAR_COLUMNS))
    days = sessions(START, END)
    folds = study_folds(spec, days)
    with tempfile.TemporaryDirectory() as tmp:
        storage = f"sqlite:///{Path(tmp) / 'optuna_studies.db'}"
        t0, c0 = time.perf_counter(), time.process_time()
        study = run_study(
            spec, data, days, storage, StudySettings(n_trials=args.trials, workers=args.workers)
        )
        timings["study"] = time.perf_counter() - t0
        cpu = time.process_time() - c0
        trials = trials_frame(study)
    durations = trials.get_column("duration_s")
    report = {
        "workload": {
            "symbols": 100,
            "start": START.isoformat(),
            "end": END.isoformat(),
            "sessions": len(days),
            "folds": [[f.start.isoformat(), f.end.isoformat(), f.sessions] for f in folds],
            "trials": args.trials,
            "workers": args.workers,
            "strategy": SPEC,
        },
        "seconds": {k: round(v, 3) for k, v in timings.items()},
        "study_cpu_seconds": round(cpu, 3),
        "trial_seconds": {
            "mean": round(float(durations.mean()), 4),
            "median": round(float(durations.median()), 4),
            "max": round(float(durations.max()), 4),
        },
        "best": {"value": round(study.best_value, 4), "params": study.best_params},
        "target_seconds": 60,
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_avg_at_end": loadavg(),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for name, secs in report["seconds"].items():
        print(f"{name:<20}{secs:>8.2f} s")
    print(
        f"trials: {args.trials} ({args.workers} worker(s)), mean {report['trial_seconds']['mean']:.3f} s/trial"
    )
    print(f"best {report['best']}; results: {args.out}")


if __name__ == "__main__":
    main()
