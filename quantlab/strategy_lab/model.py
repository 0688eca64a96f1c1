"""Walk-forward model strategies: point-in-time training sets, fitting (with a model cache), scores and the
rows of the `models` table. Pure functions over polars/numpy/scikit-learn; no Dagster.

Schedule
    Fit dates are the sessions whose global calendar index (`quantlab.calendar.session_index`) is a multiple
    of `refit_every`. The model in force at decision date d is the one fitted at the last fit date f <= d
    (`refit_date`). The schedule depends on the calendar only, so a ranged run and day-by-day runs use the
    same models, and a daily run reuses the model of f from the cache instead of refitting it.

Training set of the model fitted at the close of f (the purge/embargo rule, `training_mask`)
    * window: dates t in the `train_window` sessions before f, shift(f, -train_window) <= t <= shift(f, -1);
    * purge: only rows whose label is known at the close of f, i.e. label `asof_date` <= f. For a symbol
      trading every session this removes the last `horizon` sessions (a symbol with gaps loses more);
    * embargo: `embargo` further sessions are dropped: t <= shift(f, -(horizon + embargo));
    * the row needs a label value and at least one non-null feature.
    Every training label was therefore known at the fit date, and nothing the model predicts (decision dates
    d >= f, features at d) overlaps a training label. The spec rejects `train_window <= horizon + embargo`
    (purge and embargo would leave no session to train on).

Features and preprocessing (`build_panel`)
    Per date, each feature is standardized across the universe symbols that have it: `xs_zscore`
    ((x - mean) / population std; 0 when the std is 0) or `xs_rank` (average rank scaled to [-0.5, 0.5]);
    missing values (warm-up, gaps) are then set to 0, the cross-sectional centre. This uses same-date data
    only (point in time), removes market-wide level shifts (the strategy ranks names within a date, so the
    model should explain the cross-section), and makes features comparable across years. The label is used
    as stored (`fwd_excess_5` is already cross-sectionally demeaned).

Scores
    The score at d is the prediction of the model in force on the standardized features at d only:
    `predict` for regressors, the probability of class 1 for classifiers. Predictions are row-wise (trees are
    evaluated per row; linear models as a per-row dot product rather than a BLAS product whose rounding
    can depend on the batch), so the score of a row never depends on which other rows are predicted with it
    (a ranged run equals day-by-day runs bit for bit). Random forests predict with n_jobs=None (their
    threaded prediction sums trees in completion order). No model (too few training rows, one class only):
    no score, the strategy holds nothing those dates.

Information coefficients (IC): the mean over dates of the cross-sectional Spearman rank correlation of
    score and label value, over dates with at least 3 names and non-constant values.
    * `in_sample_ic`: the model's own predictions on its training rows, on the training dates whose
      calendar session index is a multiple of the label horizon: consecutive dates' h-session labels
      overlap (their daily ICs are nearly copies), so every h-th date carries the information at 1/h of
      the prediction cost (the full in-sample prediction took 2/3 of a 100-symbol walk-forward).
    * `oos_ic` at fit date f: the PREVIOUS model (fitted at f_prev = shift(f, -refit_every)) over its
      prediction window, decision dates f_prev <= d < f (exactly the scores it gave the strategy),
      restricted to rows whose label is known at f (asof_date <= f); `oos_dates` counts the dates used.
      It uses only data known at f, so it is point in time and reproducible on any later day.

Threads
    Estimators fit and predict single-threaded (OpenMP and BLAS limited to one thread): HistGradientBoosting
    sums gradients with an OpenMP reduction whose rounding depends on the thread count, so a fixed count
    makes a model the same on any machine; and OpenMP's spin-waiting collapses on a busy machine (a 5-symbol
    walk-forward measured 10x slower with 2 threads on 2 loaded cores than with 1).

Cache (`ModelCache`)
    Fitted estimators are stored with joblib as `<dir>/<model_id>.joblib`. `model_id` hashes everything that
    determines the model: strategy id and version, estimator (class and full parameters, seed), feature set
    (id, version, members), preprocessing, label and horizon, window, embargo, fit date, training range, the
    scikit-learn version and a hash of the training matrix and labels. A hit is the pickled estimator itself,
    so its predictions are bit-identical to the refit; a missing, corrupt or mismatching file is refitted and
    rewritten. The directory must be trusted (joblib files are pickles).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from quantlab.calendar import all_sessions, session_index, sessions, shift_sessions
from quantlab.features.sets import FeatureSet
from quantlab.strategy_lab.spec import ModelSignal, StrategySpec

_EPOCH = dt.date(1970, 1, 1)
_NEVER = np.iinfo(np.int32).max  # as-of day of a row without a label
MIN_IC_NAMES = 3


def _day(d: dt.date) -> int:
    return (d - _EPOCH).days


def _date(day: int) -> dt.date:
    return _EPOCH + dt.timedelta(days=int(day))


# --------------------------------------------------------------------------------------------- schedule


def refit_date(day: dt.date, refit_every: int) -> dt.date:
    """The fit date of the model in force at session `day`: the last session f <= day whose calendar
    session index is a multiple of `refit_every`."""
    i = int(session_index([day])[0])
    return all_sessions()[i - i % refit_every]


def refit_dates(start: dt.date, end: dt.date, refit_every: int) -> list[dt.date]:
    """Fit dates (sessions with session_index % refit_every == 0) in [start, end]."""
    days = sessions(start, end)
    if not days:
        return []
    idx = session_index(days)
    return [d for d, i in zip(days, idx, strict=True) if i % refit_every == 0]


def training_window(fit_date: dt.date, signal: ModelSignal) -> tuple[dt.date, dt.date]:
    """Nominal first and last training dates of the model fitted at `fit_date`: the `train_window` sessions
    before it, minus the purged `horizon` and the `embargo` sessions at the end (see the module docstring)."""
    return (
        shift_sessions(fit_date, -signal.train_window),
        shift_sessions(fit_date, -(signal.horizon + signal.embargo)),
    )


def history_start(signal: ModelSignal, start: dt.date) -> dt.date:
    """The first date of features and labels a walk-forward from `start` reads: the training window of the
    model before the one in force at `start` (the out-of-sample IC of a fit at `start` needs it)."""
    first_fit = shift_sessions(refit_date(start, signal.refit_every), -signal.refit_every)
    return shift_sessions(first_fit, -signal.train_window)


# ------------------------------------------------------------------------------------------------ panel


@dataclass(frozen=True)
class Panel:
    """Model inputs, one row per (date, symbol) sorted by date then symbol.

    `day` are dates as days since 1970-01-01; `X` the standardized features (missing = 0); `valid` whether
    any raw feature was present; `y` the label value (NaN unknown); `asof` the label's as-of day.
    """

    day: np.ndarray
    symbol: np.ndarray
    X: np.ndarray
    valid: np.ndarray
    y: np.ndarray
    asof: np.ndarray
    features: tuple[str, ...]

    def rows(self, first: dt.date, last: dt.date) -> slice:
        """The rows dated in [first, last]."""
        lo = int(np.searchsorted(self.day, _day(first), side="left"))
        hi = int(np.searchsorted(self.day, _day(last), side="right"))
        return slice(lo, hi)


def _standardize(name: str, method: str) -> pl.Expr:
    x = pl.col(name)
    if method == "xs_rank":
        n = x.count().over("date")
        r = (x.rank("average").over("date") - 1.0) / (n - 1.0) - 0.5
        return pl.when(n > 1).then(r).otherwise(pl.when(x.is_not_null()).then(0.0)).alias(name)
    mean, std = x.mean().over("date"), x.std(ddof=0).over("date")
    scale = x.abs().max().over("date")
    # a flat cross-section can leave a ~1e-17 std from rounding: count it as zero
    return pl.when(std > 1e-12 * scale).then((x - mean) / std).otherwise(0.0).alias(name)


def build_panel(
    features: pl.DataFrame,
    labels: pl.DataFrame,
    signal: ModelSignal,
    feature_names: Sequence[str],
    symbols: Iterable[str] | None = None,
) -> Panel:
    """Standardized features of the universe joined with `signal.label` (long `labels` table rows)."""
    names = list(feature_names)
    df = features.select("date", "symbol", *names)
    if symbols is not None:
        df = df.filter(pl.col("symbol").is_in(list(symbols)))
    df = df.with_columns(pl.col(n).cast(pl.Float64).fill_nan(None) for n in names).sort("date", "symbol")
    lab = labels.filter(pl.col("label") == signal.label).select(
        "date", "symbol", pl.col("value").alias("_y"), pl.col("asof_date").alias("_asof")
    )
    df = df.with_columns(_valid=pl.any_horizontal(pl.col(n).is_not_null() for n in names))
    df = df.with_columns(_standardize(n, signal.preprocess) for n in names)
    df = df.join(lab, on=["date", "symbol"], how="left", maintain_order="left")
    X = df.select(pl.col(n).fill_null(0.0) for n in names).to_numpy().astype(np.float64, order="C")
    return Panel(
        day=df.get_column("date").cast(pl.Int32).to_numpy().astype(np.int64),
        symbol=df.get_column("symbol").to_numpy(),
        X=np.ascontiguousarray(X),
        valid=df.get_column("_valid").to_numpy(),
        y=df.get_column("_y").cast(pl.Float64).fill_null(np.nan).to_numpy(),
        asof=df.get_column("_asof").cast(pl.Int32).fill_null(_NEVER).to_numpy().astype(np.int64),
        features=tuple(names),
    )


def training_mask(panel: Panel, fit_date: dt.date, signal: ModelSignal) -> tuple[slice, np.ndarray]:
    """The training rows of the model fitted at `fit_date`: a slice of the panel and a mask over it."""
    first, last = training_window(fit_date, signal)
    rows = panel.rows(first, last)
    mask = (panel.asof[rows] <= _day(fit_date)) & ~np.isnan(panel.y[rows]) & panel.valid[rows]
    return rows, mask


# ------------------------------------------------------------------------------------- fit and predict


@functools.cache
def _threadpools() -> Any:
    import sklearn.ensemble  # noqa: F401 - loads scikit-learn's OpenMP runtime so the controller sees it
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """OpenMP and BLAS limited to one thread (see "Threads" in the module docstring)."""
    with _threadpools().limit(limits=1):
        yield


def make_estimator(signal: ModelSignal) -> Any:
    return signal.estimator_class()(**signal.estimator_params())


def fit_estimator(signal: ModelSignal, X: np.ndarray, y: np.ndarray) -> Any | None:
    """A fitted estimator, or None when a classifier's labels hold a single class."""
    est = make_estimator(signal)
    if signal.is_classifier:
        y = (y > 0.5).astype(np.int64)
        if np.unique(y).size < 2:
            return None
    with single_thread():
        est.fit(X, y)
    if "n_jobs" in est.get_params():
        est.set_params(n_jobs=None)  # deterministic prediction (see the module docstring)
    return est


def predict(model: Any, X: np.ndarray) -> np.ndarray:
    """Scores of the rows of X, each computed from its own row only (batch-invariant)."""
    if X.shape[0] == 0:
        return np.empty(0, dtype=np.float64)
    with single_thread():
        return _predict(model, X)


def _predict(model: Any, X: np.ndarray) -> np.ndarray:
    coef = getattr(model, "coef_", None)
    if coef is not None:  # ridge, logistic regression: a per-row dot product
        z = (X * np.ravel(coef)[None, :]).sum(axis=1) + float(np.ravel(model.intercept_)[0])
        if hasattr(model, "classes_"):
            if int(model.classes_[1]) != 1:
                raise ValueError("unexpected classes")
            with np.errstate(over="ignore"):
                return 1.0 / (1.0 + np.exp(-z))
        return z.astype(np.float64)
    if hasattr(model, "predict_proba") and hasattr(model, "classes_"):
        proba = model.predict_proba(X)
        return proba[:, list(model.classes_).index(1)].astype(np.float64)
    return np.asarray(model.predict(X), dtype=np.float64)


def mean_rank_ic(day: np.ndarray, score: np.ndarray, y: np.ndarray) -> tuple[float | None, int]:
    """Mean over dates of the cross-sectional Spearman correlation of `score` and `y` (rows sorted by day),
    over dates with >= 3 names and a finite correlation; also the number of such dates."""
    if day.size == 0:
        return None, 0
    per_date = (
        pl.DataFrame({"d": day, "s": score, "y": y})
        .group_by("d", maintain_order=True)
        .agg(ic=pl.corr("s", "y", method="spearman"), n=pl.len())
        .filter((pl.col("n") >= MIN_IC_NAMES) & pl.col("ic").is_not_null() & pl.col("ic").is_finite())
        .sort("d")
    )
    if per_date.height == 0:
        return None, 0
    ics = per_date.get_column("ic").to_numpy()
    return float(np.mean(ics)), int(ics.size)


# ------------------------------------------------------------------------------------------------- cache


def data_hash(X: np.ndarray, y: np.ndarray) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(np.asarray(X.shape, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(X, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(y, dtype=np.float64).tobytes())
    return h.hexdigest()


def model_key(
    spec: StrategySpec,
    feature_set: FeatureSet,
    fit_date: dt.date,
    train_start: dt.date,
    train_end: dt.date,
    training_data_hash: str,
) -> dict[str, Any]:
    """Everything that determines a fitted model (hashed into `model_id`)."""
    import sklearn

    signal = spec.signal
    assert isinstance(signal, ModelSignal)
    cls = signal.estimator_class()
    return {
        "strategy": spec.id,
        "strategy_version": spec.version,
        "estimator": signal.estimator,
        "estimator_class": f"{cls.__module__}.{cls.__name__}",
        "estimator_params": signal.estimator_params(),
        "seed": signal.seed,
        "sklearn": sklearn.__version__,
        "feature_set": feature_set.id,
        "feature_set_version": feature_set.version,
        "features": list(feature_set.features),
        "preprocess": signal.preprocess,
        "label": signal.label,
        "horizon": signal.horizon,
        "train_window": signal.train_window,
        "embargo": signal.embargo,
        "fit_date": fit_date.isoformat(),
        "train_start": train_start.isoformat(),
        "train_end": train_end.isoformat(),
        "data": training_data_hash,
    }


def model_id(key: dict[str, Any]) -> str:
    text = json.dumps(key, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class ModelCache:
    """Fitted estimators on disk, `<directory>/<model_id>.joblib` (no directory: no cache)."""

    directory: Path | None
    hits: int = 0
    misses: int = 0

    def path(self, mid: str) -> Path | None:
        return None if self.directory is None else Path(self.directory) / f"{mid}.joblib"

    def load(self, mid: str) -> Any | None:
        path = self.path(mid)
        if path is None or not path.is_file():
            return None
        import joblib

        try:
            stored = joblib.load(path)
            if not isinstance(stored, dict) or stored.get("model_id") != mid:
                return None
            model = stored["model"]
            if not hasattr(model, "predict"):
                return None
        except Exception:  # noqa: BLE001 - a corrupt or foreign file is simply refitted
            return None
        return model

    def save(self, mid: str, model: Any) -> None:
        path = self.path(mid)
        if path is None:
            return
        import joblib

        tmp: str | None = None
        try:  # a cache that cannot be written only costs a refit next time
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{mid}.", suffix=".tmp")
            os.close(fd)
            joblib.dump({"model_id": mid, "model": model}, tmp)
            os.replace(tmp, path)  # atomic: readers see the old file or the whole new one
        except OSError:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)


# --------------------------------------------------------------------------------------- walk-forward


@dataclass(frozen=True)
class FittedModel:
    model_id: str
    fit_date: dt.date
    model: Any
    train_start: dt.date
    train_end: dt.date
    n_train: int
    cached: bool


def fit_at(
    panel: Panel,
    spec: StrategySpec,
    feature_set: FeatureSet,
    fit_date: dt.date,
    cache: ModelCache | None = None,
) -> FittedModel | None:
    """The model fitted at the close of `fit_date` (from the cache when it holds it), or None when fewer
    than `min_train_rows` usable rows (or a single class) are available."""
    signal = spec.signal
    assert isinstance(signal, ModelSignal)
    rows, mask = training_mask(panel, fit_date, signal)
    X, y, day = panel.X[rows][mask], panel.y[rows][mask], panel.day[rows][mask]
    if y.size < signal.min_train_rows:
        return None
    train_start, train_end = _date(day[0]), _date(day[-1])
    key = model_key(spec, feature_set, fit_date, train_start, train_end, data_hash(X, y))
    mid = model_id(key)
    model = cache.load(mid) if cache is not None else None
    cached = model is not None
    if model is None:
        model = fit_estimator(signal, X, y)
        if model is None:
            return None
        if cache is not None:
            cache.save(mid, model)
    if cache is not None:
        cache.hits += cached
        cache.misses += not cached
    return FittedModel(mid, fit_date, model, train_start, train_end, int(y.size), cached)


def in_sample_ic(panel: Panel, fitted: FittedModel, signal: ModelSignal) -> float | None:
    """Mean daily rank IC of a model's predictions on its own training rows, on the training dates whose
    calendar session index is a multiple of the label horizon (non-overlapping label windows)."""
    rows, mask = training_mask(panel, fitted.fit_date, signal)
    day = panel.day[rows]
    days = np.unique(day[mask])
    if days.size == 0:
        return None
    idx = session_index(pl.Series(days, dtype=pl.Int32).cast(pl.Date))
    mask = mask & np.isin(day, days[idx % signal.horizon == 0])
    X, y = panel.X[rows][mask], panel.y[rows][mask]
    return mean_rank_ic(day[mask], predict(fitted.model, X), y)[0]


@dataclass
class WalkForward:
    """Scores (date, symbol, score, model_id) for the decision dates of a range, the `models` rows of the
    fit dates in it, and every model fitted or loaded on the way (by fit date; None: no model)."""

    scores: pl.DataFrame
    models: pl.DataFrame
    fitted: dict[dt.date, FittedModel | None] = field(default_factory=dict)


SCORE_SCHEMA = {"date": pl.Date, "symbol": pl.String, "score": pl.Float64, "model_id": pl.String}


def walk_forward(
    features: pl.DataFrame,
    labels: pl.DataFrame,
    spec: StrategySpec,
    feature_set: FeatureSet,
    start: dt.date,
    end: dt.date,
    cache: ModelCache | None = None,
) -> WalkForward:
    """Scores of a model strategy for the decision dates in [start, end] and the `models` rows of its fit
    dates in [start, end].

    `features` (the features table) and `labels` (the long labels table) must cover
    `history_start(signal, start)` .. `end`; anything later than `end` is ignored, and labels are used only
    where known at the fit date, so extra rows never change the result.
    """
    signal = spec.signal
    if not isinstance(signal, ModelSignal):
        raise TypeError(f"strategy '{spec.id}' is not a model strategy")
    k = signal.refit_every
    panel = build_panel(
        features.filter(pl.col("date") <= end), labels, signal, feature_set.features, spec.universe.symbols
    )
    in_range = panel.rows(start, end)
    decision_days = np.unique(panel.day[in_range])
    decision_fit = {int(d): refit_date(_date(d), k) for d in decision_days}
    fits_in_range = refit_dates(start, end, k)
    needed = set(decision_fit.values()) | set(fits_in_range)
    needed |= {shift_sessions(f, -k) for f in fits_in_range}
    fitted = {f: fit_at(panel, spec, feature_set, f, cache) for f in sorted(needed)}

    # scores: each decision row predicted by the model in force that date
    frames = []
    for f in sorted(set(decision_fit.values())):
        model = fitted[f]
        if model is None:
            continue
        days = [d for d, g in decision_fit.items() if g == f]
        sl = panel.rows(_date(min(days)), _date(max(days)))
        take = np.arange(sl.start, sl.stop)[panel.valid[sl]]
        frames.append(
            pl.DataFrame(
                {
                    "date": pl.Series(panel.day[take], dtype=pl.Int32).cast(pl.Date),
                    "symbol": panel.symbol[take],
                    "score": predict(model.model, panel.X[take]),
                    "model_id": [model.model_id] * take.size,
                },
                schema=SCORE_SCHEMA,
            )
        )
    scores = pl.concat(frames) if frames else pl.DataFrame(schema=SCORE_SCHEMA)

    rows = []
    for f in fits_in_range:
        model = fitted[f]
        if model is None:
            continue
        prev_date = shift_sessions(f, -k)
        prev = fitted.get(prev_date)
        oos_ic, oos_dates = None, 0
        if prev is not None:
            sl = panel.rows(prev_date, shift_sessions(f, -1))
            ok = panel.valid[sl] & (panel.asof[sl] <= _day(f)) & ~np.isnan(panel.y[sl])
            take = np.arange(sl.start, sl.stop)[ok]
            oos_ic, oos_dates = mean_rank_ic(
                panel.day[take], predict(prev.model, panel.X[take]), panel.y[take]
            )
        rows.append(
            {
                "model_id": model.model_id,
                "strategy": spec.id,
                "strategy_version": spec.version,
                "date": f,
                "estimator": signal.estimator,
                "params": json.dumps(signal.estimator_params(), sort_keys=True, separators=(",", ":")),
                "feature_set": feature_set.id,
                "feature_set_version": feature_set.version,
                "features": ",".join(feature_set.features),
                "label": signal.label,
                "horizon": signal.horizon,
                "train_window": signal.train_window,
                "refit_every": k,
                "embargo": signal.embargo,
                "seed": signal.seed,
                "train_start": model.train_start,
                "train_end": model.train_end,
                "n_train": model.n_train,
                "in_sample_ic": in_sample_ic(panel, model, signal),
                "oos_ic": oos_ic,
                "oos_dates": oos_dates,
                "oos_model_id": prev.model_id if prev is not None else None,
            }
        )
    return WalkForward(scores=scores, models=models_frame(rows), fitted=fitted)


MODELS_SCHEMA: dict[str, Any] = {
    "model_id": pl.String,
    "strategy": pl.String,
    "strategy_version": pl.Int64,
    "date": pl.Date,
    "estimator": pl.String,
    "params": pl.String,
    "feature_set": pl.String,
    "feature_set_version": pl.String,
    "features": pl.String,
    "label": pl.String,
    "horizon": pl.Int64,
    "train_window": pl.Int64,
    "refit_every": pl.Int64,
    "embargo": pl.Int64,
    "seed": pl.Int64,
    "train_start": pl.Date,
    "train_end": pl.Date,
    "n_train": pl.Int64,
    "in_sample_ic": pl.Float64,
    "oos_ic": pl.Float64,
    "oos_dates": pl.Int64,
    "oos_model_id": pl.String,
}


def models_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Rows of the `models` table in its column layout."""
    return pl.DataFrame(rows, schema=MODELS_SCHEMA) if rows else pl.DataFrame(schema=MODELS_SCHEMA)
