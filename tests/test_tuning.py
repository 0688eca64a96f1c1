"""Tuning: walk-forward folds, Optuna studies in RDB storage, the `tuning_studies` asset, and the trial count
feeding the deflated Sharpe of the tuned strategy's KPIs."""

import datetime as dt
import json
import shutil
import warnings
from pathlib import Path

import dagster as dg
import optuna
import polars as pl
import pytest

from quantlab.assets.backtest import run_kpis, run_strategy_returns
from quantlab.assets.curator import run_ohlcv
from quantlab.assets.features import run_features
from quantlab.assets.strategy_lab import run_targets
from quantlab.assets.tuning import tuning_assets
from quantlab.backtest.run import backtest_strategy, warmup_start
from quantlab.calendar import sessions
from quantlab.curator.synthetic import synthetic_ohlcv
from quantlab.features.library import compute_features
from quantlab.project import Project
from quantlab.resources import MarketData, ProjectFiles, Warehouse
from quantlab.resources.tuning_storage import TuningStorage
from quantlab.resources.warehouse import validate
from quantlab.strategy_lab.spec import StrategySpec
from quantlab.strategy_lab.targets import strategy_targets
from quantlab.tuning.folds import holding_horizon, walk_forward_folds
from quantlab.tuning.objective import BAR_COLUMNS, TuningData, fold_returns
from quantlab.tuning.study import (
    StudySettings,
    leaderboard,
    run_study,
    study_folds,
    trial_stats,
    trials_frame,
)

warnings.filterwarnings("ignore", message=".*(beta|preview|experimental).*")
optuna.logging.set_verbosity(optuna.logging.WARNING)

REPO = Path(__file__).resolve().parents[1]
SPEC = {
    "id": "mom",
    "universe": {"all": True},
    "signal": {"score": "mom_60 - 0.5 * vol_60"},
    "portfolio": {"long": {"top": 2}, "max_weight": 0.5},
    "rebalance": {"every": 5},
    "tuning": {
        "params": {
            "portfolio.long.top": {"type": "int", "low": 1, "high": 4},
            "rebalance.every": {"type": "int", "low": 1, "high": 10},
            "portfolio.weighting": {"type": "choice", "choices": ["equal", "inverse_vol"]},
        },
        "folds": 3,
    },
}


def _spec(**tuning: object) -> StrategySpec:
    return StrategySpec.model_validate({**SPEC, "tuning": {**SPEC["tuning"], **tuning}})


@pytest.fixture(scope="module")
def synthetic() -> tuple[TuningData, list[dt.date]]:
    bars = synthetic_ohlcv(12, dt.date(2019, 1, 2), dt.date(2020, 12, 31), seed=3)
    feats = compute_features(bars)
    return TuningData(feats, bars.select(BAR_COLUMNS)), sessions(dt.date(2019, 6, 3), dt.date(2020, 12, 31))


def test_folds_are_contiguous_with_a_purge_gap() -> None:
    days = sessions(dt.date(2020, 1, 2), dt.date(2020, 12, 31))
    folds = walk_forward_folds(days, 4, purge=6, embargo=2)
    assert [f.index for f in folds] == [0, 1, 2, 3]
    assert folds[0].start == days[0] and folds[-1].end == days[-1]
    for a, b in zip(folds, folds[1:], strict=False):
        gap = days.index(b.start) - days.index(a.end) - 1
        assert gap == 8  # purge + embargo sessions scored by no fold
    assert sum(f.sessions for f in folds) == len(days) - 3 * 8
    with pytest.raises(ValueError, match="too few"):
        walk_forward_folds(days[:20], 4, purge=6)
    # the default purge covers the longest holding period of the search space
    assert holding_horizon(_spec()) == 10 + 1


def test_fold_returns_are_the_chain_backtest_of_the_fold(synthetic) -> None:
    """A fold's scored returns are exactly the backtester's returns for those dates (no cap, no cash: the
    warm-up of one rebalance cycle fixes the state)."""
    data, days = synthetic
    spec = _spec()
    fold = study_folds(spec, days)[1]
    got = fold_returns(spec, data, fold)
    lo = warmup_start(days[0], spec, None)
    targets = strategy_targets(data.features.filter(pl.col("date") >= lo), spec)
    inception = targets.filter(pl.col("weight") != 0).get_column("date").min()
    full, _ = backtest_strategy(
        data.bars.filter(pl.col("date") >= lo), targets, spec, days[0], days[-1], inception
    )
    want = full.filter(pl.col("date").is_between(fold.start, fold.end))
    assert got.height == want.height > 100
    assert (got.get_column("net") - want.get_column("net")).abs().max() < 1e-12
    assert got.get_column("cost").sum() > 0  # net of costs


def test_study_persists_resumes_and_counts_trials(synthetic, tmp_path: Path) -> None:
    data, days = synthetic
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    spec = _spec()
    first = run_study(spec, data, days, storage, StudySettings(n_trials=4))
    again = run_study(spec, data, days, storage, StudySettings(n_trials=3))
    assert again.study_name == first.study_name and len(again.trials) == 7
    assert run_study(spec, data, days, storage, StudySettings(total_trials=7)).trials == again.trials
    rows = validate("tuning_trials", trials_frame(again))
    assert rows.height == 7 and set(rows.get_column("state")) == {"COMPLETE"}
    folds = json.loads(rows.item(0, "folds"))
    assert [f["fold"] for f in folds] == [0, 1, 2] and all(f["days"] > 50 for f in folds)
    stats = trial_stats(rows).row(0, named=True)
    assert stats["n_trials"] == 7 and stats["sr_variance"] > 0
    # another search space (or window) is another study; both count for the strategy
    other = run_study(_spec(folds=4), data, days, storage, StudySettings(n_trials=2))
    assert other.study_name != again.study_name
    both = pl.concat([rows, trials_frame(other)])
    assert trial_stats(both).item(0, "n_trials") == 9


def test_constraints_rank_infeasible_trials_last_and_penalties_lower_the_objective(synthetic) -> None:
    data, days = synthetic
    storage = optuna.storages.InMemoryStorage()
    hard = _spec(constraints={"max_drawdown": 0.15})
    rows = trials_frame(run_study(hard, data, days, storage, StudySettings(n_trials=8)))
    assert rows.get_column("feasible").to_list() == (rows.get_column("max_dd") <= 0.15).to_list()
    board = leaderboard(rows)
    feasible = board.get_column("feasible").to_list()
    assert feasible == sorted(feasible, reverse=True) and not all(feasible) and any(feasible)
    soft = _spec(constraints={"max_drawdown": 0.01, "handling": "penalty", "penalty": 2.0})
    pen = trials_frame(
        run_study(soft, data, days, optuna.storages.InMemoryStorage(), StudySettings(n_trials=3))
    )
    for r in pen.iter_rows(named=True):
        assert r["value"] == pytest.approx(r["sharpe"] - 2.0 * (r["max_dd"] / 0.01 - 1.0))


# ------------------------------------------------------------------ Dagster: the asset, the kpis, promotion
WINDOW = (dt.date(2010, 1, 4), dt.date(2012, 12, 31))


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A project with a tuned and an untuned strategy, and a warehouse holding bars and features of the
    embedded data (the stage functions the assets run)."""
    root = tmp_path_factory.mktemp("project")
    (root / "strategies").mkdir()
    for name in ("momentum_top2", "low_vol"):
        shutil.copy(REPO / "strategies" / f"{name}.yaml", root / "strategies" / f"{name}.yaml")
    shutil.copy(REPO / "supervisor.yaml", root / "supervisor.yaml")
    db = root / "data" / "warehouse.duckdb"
    wh = Warehouse(database=str(db))
    assert run_ohlcv(wh, MarketData().source(), dt.date(2009, 1, 2), WINDOW[1]).metadata["rows"] > 0
    run_features(wh, dt.date(2009, 1, 2), WINDOW[1])
    return root, db


def _tune(root: Path, db: Path, total: int) -> dg.MaterializeResult:
    [asset] = tuning_assets(Project(root))
    result = dg.materialize(
        [asset],
        partition_key="momentum_top2",
        resources={
            "warehouse": Warehouse(database=str(db)),
            "project_files": ProjectFiles(root=str(root)),
            "tuning_storage": TuningStorage(),
        },
        run_config={"ops": {"tuning_studies": {"config": {"total_trials": total, "start": "2011-01-03"}}}},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    return result


def _kpis_on(db: Path, day: dt.date) -> dict[str, dict]:
    wh = Warehouse(database=str(db))
    run_kpis(wh, day, day)
    rows = wh.read_table("kpis", day, day, where={"window": "full"})
    return {r["strategy"]: r for r in rows.iter_rows(named=True)}


def test_tuning_asset_feeds_the_deflated_sharpe_more_trials_deflate_more(chain) -> None:
    root, db = chain
    wh, project = Warehouse(database=str(db)), Project(root)
    start = dt.date(2010, 6, 1)
    run_targets(wh, MarketData(), project, start, WINDOW[1])
    run_strategy_returns(wh, project, start, WINDOW[1])
    day = WINDOW[1]
    before = _kpis_on(db, day)
    assert before["momentum_top2"]["dsr"] == before["momentum_top2"]["psr"]  # no trials yet

    result = _tune(root, db, total=6)
    meta = result.asset_materializations_for_node("tuning_studies")[0].metadata
    assert meta["trials"].value == 6 and meta["trials_counted_for_dsr"].value == 6
    assert "| trial | value |" in meta["leaderboard"].value
    report = Path(meta["tuning_report"].value)
    assert "## Leaderboard" in report.read_text() and any(report.parent.glob("tuning_history_*.png"))
    assert (db.parent / "optuna_studies.db").is_file()  # the default storage, next to the warehouse
    trials = wh.read_table("tuning_trials")
    assert trials.height == 6 and set(trials.get_column("strategy")) == {"momentum_top2"}
    few = _kpis_on(db, day)

    _tune(root, db, total=30)  # the same study, resumed: 24 more trials
    assert wh.read_table("tuning_trials").height == 30
    many = _kpis_on(db, day)

    tuned = [before["momentum_top2"], few["momentum_top2"], many["momentum_top2"]]
    assert len({(k["sharpe"], k["psr"]) for k in tuned}) == 1  # same strategy track, same Sharpe and PSR
    assert tuned[0]["dsr"] > tuned[1]["dsr"] > tuned[2]["dsr"]  # more trials: lower deflated Sharpe
    for kp in (few, many):  # an untuned strategy is not deflated
        assert kp["low_vol"]["dsr"] == kp["low_vol"]["psr"]


def test_promote_writes_a_new_version_only_when_asked(chain, tmp_path: Path, monkeypatch) -> None:
    from click.testing import CliRunner

    from quantlab.cli import main
    from quantlab.strategy_lab.spec import load_strategies

    root, db = chain
    _tune(root, db, total=6)  # tops the study up (no-op when an earlier test ran more trials)
    project = tmp_path / "project"
    shutil.copytree(root / "strategies", project / "strategies")
    monkeypatch.setenv("QUANTLAB_PROJECT_DIR", str(project))
    monkeypatch.setenv("QUANTLAB_WAREHOUSE", str(db))
    path = project / "strategies" / "momentum_top2.yaml"
    original = path.read_text()
    runner = CliRunner()
    shown = runner.invoke(main, ["tune", "show", "momentum_top2"])
    assert shown.exit_code == 0 and "study momentum_top2.v1." in shown.output and "| trial |" in shown.output

    trials = Warehouse(database=str(db)).read_table("tuning_trials")
    current = load_strategies(project / "strategies")["momentum_top2"]
    pick = next(
        r
        for r in trials.sort("trial").iter_rows(named=True)
        if json.loads(r["params"])["portfolio.long.top"] != current.portfolio.long.top
    )
    args = ["tune", "promote", "momentum_top2", "--trial", str(pick["trial"])]
    dry = runner.invoke(main, [*args, "--dry-run"])
    assert dry.exit_code == 0 and "portfolio.long.top" in dry.output and path.read_text() == original

    done = runner.invoke(main, args)
    assert done.exit_code == 0, done.output
    promoted = load_strategies(project / "strategies")  # .history/ is not loaded as strategies
    assert set(promoted) == {"momentum_top2", "low_vol"}
    new = promoted["momentum_top2"]
    assert new.version == 2 and new.tuning is not None
    params = json.loads(pick["params"])
    assert new.portfolio.long.top == params["portfolio.long.top"]
    assert new.rebalance.every == params["rebalance.every"]
    assert new.execution == current.execution and new.signal == current.signal  # the rest is unchanged
    assert (project / "strategies" / ".history" / "momentum_top2.v1.yaml").read_text() == original
    again = runner.invoke(main, args)  # that trial tuned version 1: refused for version 2
    assert again.exit_code != 0 and "version 1" in again.output


def test_model_strategy_study_with_pruning(synthetic) -> None:
    """A model strategy's estimator parameter is tuned (walk-forward models per fold); pruned trials count
    for the deflated Sharpe but never lead the leaderboard."""
    from quantlab.features.labels import compute_labels
    from quantlab.features.sets import PRESETS

    data, days = synthetic
    labels = compute_labels(synthetic_ohlcv(12, dt.date(2019, 1, 2), dt.date(2020, 12, 31), seed=3))
    spec = StrategySpec.model_validate(
        {
            "id": "ridge",
            "universe": {"all": True},
            "signal": {
                "kind": "model",
                "estimator": "ridge",
                "features": "momentum",
                "label": "fwd_excess_5",
                "train_window": 126,
                "refit_every": 63,
                "embargo": 5,
            },
            "portfolio": {"long": {"top": 3}},
            "rebalance": {"every": 5},
            "tuning": {
                "params": {
                    "signal.params.alpha": {"type": "float", "low": 0.01, "high": 100.0, "log": True},
                    "portfolio.long.top": {"type": "int", "low": 2, "high": 5},
                },
                "folds": 3,
                "pruner": "median",
            },
        }
    )
    model_data = TuningData(data.features, data.bars, labels, PRESETS["momentum"])
    study = run_study(spec, model_data, days, optuna.storages.InMemoryStorage(), StudySettings(n_trials=12))
    rows = trials_frame(study)
    states = rows.get_column("state").to_list()
    assert "COMPLETE" in states and "PRUNED" in states
    alphas = {json.loads(p)["signal.params.alpha"] for p in rows.get_column("params")}
    assert len(alphas) == 12
    assert trial_stats(rows).item(0, "n_trials") == 12
    assert set(leaderboard(rows, top=12).get_column("trial")) == set(
        rows.filter(pl.col("state") == "COMPLETE").get_column("trial")
    )


def test_an_invalid_combination_fails_its_trial_not_the_study(synthetic) -> None:
    """Every bound is valid alone (checked at load), but net 0.5 exceeds gross 0.4: such trials are FAIL,
    recorded with the reason, and are not counted as tested strategies."""
    data, days = synthetic
    spec = StrategySpec.model_validate(
        {
            "id": "ls",
            "universe": {"all": True},
            "signal": {"score": "mom_20"},
            "portfolio": {"long": {"top": 2}, "short": {"top": 2}},
            "tuning": {
                "params": {
                    "portfolio.gross": {"type": "choice", "choices": [0.4, 1.0]},
                    "portfolio.net": {"type": "choice", "choices": [0.0, 0.5]},
                },
                "folds": 2,
                "sampler": "random",
            },
        }
    )
    study = run_study(spec, data, days, optuna.storages.InMemoryStorage(), StudySettings(n_trials=10))
    failed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    assert failed and all(t.params == {"portfolio.gross": 0.4, "portfolio.net": 0.5} for t in failed)
    assert all("exceeds gross" in t.user_attrs["error"] for t in failed)
    assert trial_stats(trials_frame(study)).item(0, "n_trials") == 10 - len(failed)
