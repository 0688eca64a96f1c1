"""Tuning: Optuna studies over a strategy's `tuning:` search space, scored walk-forward out of sample."""
