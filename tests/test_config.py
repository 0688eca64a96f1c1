"""Tests for configuration loading: the repository's YAML, and bad strategy/world files written to tmp_path.

Every ConfigError must name the file, the line, the field and the reason (see `quantlab.config`).
"""

from __future__ import annotations

import re
from pathlib import Path

import pydantic
import pytest
import yaml

from quantlab.config import ConfigError
from quantlab.curator.settings import CuratorSpec, load_curator
from quantlab.curator.sources import DATASETS, get_source
from quantlab.features.library import FEATURE_NAMES
from quantlab.project import load_project
from quantlab.resources import MarketData
from quantlab.strategy_lab.spec import StrategySpec, load_strategies, load_strategy
from quantlab.supervisor.spec import SupervisorSpec, load_supervisor
from quantlab.world.spec import WorldSpec, load_world, load_worlds

REPO = Path(__file__).resolve().parents[1]
Specs = dict[str, StrategySpec]


@pytest.fixture(scope="module")
def repo_strategies() -> Specs:
    return load_project(REPO).strategies


def _error(excinfo: pytest.ExceptionInfo[ConfigError]) -> str:
    return str(excinfo.value)


def _location(message: str, path: Path) -> int:
    """The line number the message gives for `path` (asserts the `path:line:` prefix is there)."""
    m = re.match(rf"^{re.escape(str(path))}:(\d+): ", message)
    assert m, f"message does not start with '{path}:<line>: ': {message!r}"
    return int(m.group(1))


# ------------------------------------------------------------------------------------- repository files


def test_every_repo_strategy_loads(repo_strategies: Specs) -> None:
    stems = sorted(p.stem for p in (REPO / "strategies").glob("*.yaml"))
    assert stems, "the repository has strategy files"
    assert sorted(repo_strategies) == stems
    for sid, spec in repo_strategies.items():
        assert spec.id == sid
        assert spec.score_expr.names <= set(FEATURE_NAMES)
        assert not spec.score_expr.is_boolean
    # spot-check values read from the files
    assert repo_strategies["momentum_long_short"].side == "long_short"
    assert repo_strategies["low_vol"].portfolio.weighting == "inverse_vol"
    assert repo_strategies["momentum_top2"].rebalance.every == 5


def test_every_repo_world_and_supervisor_loads(repo_strategies: Specs) -> None:
    project = load_project(REPO)
    stems = sorted(p.stem for p in (REPO / "worlds").glob("*.yaml"))
    assert stems
    assert sorted(project.worlds) == stems
    for world in project.worlds.values():
        members = world.members(repo_strategies)
        assert members and set(members) <= set(repo_strategies)
        assert world.selection.topk.total <= len(members)
        for stage in ("backtest", "paper", "live", "inactive"):
            assert world.gates[stage].names <= world.metric_names
        assert len(world.ruleset_hash) == 16
    assert project.worlds["momentum_lab"].members(repo_strategies) == ["momentum_long_short", "momentum_top2"]
    rules = project.supervisor.rules
    assert isinstance(project.supervisor, SupervisorSpec)
    assert (rules.max_gross.limit, rules.max_gross.action) == (1.5, "scale")
    assert (rules.max_drawdown.limit, rules.max_drawdown.action) == (0.7, "reject")


def test_supervisor_file_absent_gives_defaults_and_unknown_key_fails(tmp_path: Path) -> None:
    assert load_supervisor(tmp_path / "missing.yaml") == SupervisorSpec()
    path = tmp_path / "supervisor.yaml"
    path.write_text(
        "rules:\n  max_gross: {limit: 1.0, action: scale}\n  max_grosss: {limit: 1.0, action: flag}\n"
    )
    with pytest.raises(ConfigError) as excinfo:
        load_supervisor(path)
    msg = _error(excinfo)
    assert _location(msg, path) == 3
    assert "rules.max_grosss: unknown key" in msg


def test_curator_file_loads_defaults_and_bad_values_fail(tmp_path: Path) -> None:
    assert load_project(REPO).curator == CuratorSpec()  # the repository's file spells out the defaults
    assert load_curator(tmp_path / "missing.yaml") == CuratorSpec()
    path = tmp_path / "curator.yaml"
    path.write_text("quality:\n  jump_threshold: 0.3\n  max_lag: 2\n")
    with pytest.raises(ConfigError) as excinfo:
        load_curator(path)
    msg = _error(excinfo)
    assert _location(msg, path) == 3 and "quality.max_lag: unknown key" in msg
    path.write_text("quality:\n  max_lag_sessions: -1\n")
    with pytest.raises(ConfigError) as excinfo:
        load_curator(path)
    assert "quality.max_lag_sessions" in _error(excinfo) and "greater than or equal to 0" in _error(excinfo)


# ------------------------------------------------------------------------------------- bad strategies

STRATEGY = """\
id: {id}
version: 1
universe: {{all: true}}
signal:
  kind: rank
  score: "{score}"
portfolio:
  long: {{top: 2}}
{extra}"""


def _strategy(
    tmp_path: Path, name: str, *, sid: str | None = None, score: str = "mom_20", extra: str = ""
) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(STRATEGY.format(id=sid or name, score=score, extra=extra))
    return path


def test_good_strategy_template_loads(tmp_path: Path) -> None:
    spec = load_strategy(_strategy(tmp_path, "good", extra="  max_weight: 0.5\n"))
    assert spec.id == "good" and spec.portfolio.long.top == 2 and spec.portfolio.max_weight == 0.5


def test_strategy_unknown_key_names_file_line_and_field(tmp_path: Path) -> None:
    path = _strategy(tmp_path, "typo", extra="  lng: {top: 1}\n")
    with pytest.raises(ConfigError) as excinfo:
        load_strategy(path)
    msg = _error(excinfo)
    assert _location(msg, path) == 9
    assert "portfolio.lng" in msg
    assert "unknown key" in msg


def test_strategy_wrong_type(tmp_path: Path) -> None:
    path = _strategy(tmp_path, "wrong_type", extra="  gross: lots\n")
    with pytest.raises(ConfigError) as excinfo:
        load_strategy(path)
    msg = _error(excinfo)
    assert _location(msg, path) == 9
    assert "portfolio.gross" in msg and "valid number" in msg


def test_strategy_out_of_range_value(tmp_path: Path) -> None:
    path = _strategy(tmp_path, "negative", extra="  short: {top: -1}\n")
    with pytest.raises(ConfigError) as excinfo:
        load_strategy(path)
    msg = _error(excinfo)
    assert _location(msg, path) == 9
    assert "portfolio.short.top" in msg and "greater than or equal to 0" in msg


def test_strategy_unknown_feature_suggests_close_name(tmp_path: Path) -> None:
    path = _strategy(tmp_path, "bad_feature", score="mom_21 - vol_20")
    with pytest.raises(ConfigError) as excinfo:
        load_strategy(path)
    msg = _error(excinfo)
    assert _location(msg, path) == 6
    assert "signal.score" in msg
    assert "unknown name 'mom_21'" in msg
    assert "did you mean" in msg and "'mom_20'" in msg


@pytest.mark.parametrize(
    ("score", "fragment"),
    [
        ("__import__('os')", "'__'"),
        ("a.b", "attribute access"),
        ("mom_20 > 0", "expected a numeric expression"),
    ],
)
def test_strategy_forbidden_score_constructs(tmp_path: Path, score: str, fragment: str) -> None:
    path = _strategy(tmp_path, "forbidden", score=score)
    with pytest.raises(ConfigError) as excinfo:
        load_strategy(path)
    msg = _error(excinfo)
    assert _location(msg, path) == 6
    assert "signal.score" in msg
    assert fragment in msg


def test_strategy_id_must_equal_file_name(tmp_path: Path) -> None:
    path = _strategy(tmp_path, "momentum", sid="other_name")
    with pytest.raises(ConfigError) as excinfo:
        load_strategy(path)
    msg = _error(excinfo)
    assert _location(msg, path) == 1
    assert "id:" in msg and "'other_name'" in msg and "'momentum'" in msg


def test_strategy_invalid_yaml_gives_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("id: broken\nuniverse: {all: true\nsignal: [\n")
    with pytest.raises(ConfigError) as excinfo:
        load_strategy(path)
    msg = _error(excinfo)
    assert _location(msg, path) == 3
    assert "invalid YAML" in msg


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", ""])
def test_strategy_file_must_be_a_mapping(tmp_path: Path, text: str) -> None:
    path = tmp_path / "not_mapping.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as excinfo:
        load_strategy(path)
    msg = _error(excinfo)
    assert _location(msg, path) == 1
    assert "mapping" in msg


def test_strategy_semantic_model_errors(tmp_path: Path) -> None:
    both = tmp_path / "both.yaml"
    both.write_text("id: both\nuniverse: {all: true, symbols: [AAPL]}\nsignal: {score: mom_20}\n")
    with pytest.raises(ConfigError, match=r"both\.yaml:2: universe: .*either"):
        load_strategy(both)
    no_legs = tmp_path / "no_legs.yaml"
    no_legs.write_text(
        "id: no_legs\nuniverse: {all: true}\nsignal: {score: mom_20}\nportfolio: {long: {top: 0}}\n"
    )
    with pytest.raises(ConfigError, match=r"no_legs\.yaml:4: portfolio: .*at least one"):
        load_strategy(no_legs)


def test_load_strategies_reports_every_bad_file(tmp_path: Path) -> None:
    _strategy(tmp_path, "good")
    bad_key = _strategy(tmp_path, "bad_key", extra="  lng: {top: 1}\n")
    bad_score = _strategy(tmp_path, "bad_score", score="vol_2O")
    with pytest.raises(ConfigError) as excinfo:
        load_strategies(tmp_path)
    msg = _error(excinfo)
    assert f"{bad_key}:9: portfolio.lng" in msg
    assert f"{bad_score}:6: signal.score" in msg
    assert "good.yaml" not in msg
    # without the bad files the directory loads
    bad_key.unlink()
    bad_score.unlink()
    assert list(load_strategies(tmp_path)) == ["good"]


# ----------------------------------------------------------------------------------------- bad worlds

WORLD = """\
id: {id}
owners: [me]
strategies: {selector}
windows: {{short: 20d, mid: 60d, long: 252d}}
stages:
{stages}selection:
{selection}"""
STAGES = """\
  backtest:
    gates:
      and:
        - "sharpe_long >= 0.3"
        - "max_dd_long <= 0.35"
  paper: {min_days: 20d, gates: "sharpe_paper >= 0.0"}
"""
SELECTION = """\
  score: "sharpe_mid"
  topk: {total: 2}
"""


def _world(
    tmp_path: Path,
    name: str,
    *,
    wid: str | None = None,
    selector: str = "{tags: [equity]}",
    stages: str = STAGES,
    selection: str = SELECTION,
) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(WORLD.format(id=wid or name, selector=selector, stages=stages, selection=selection))
    return path


def _world_error(path: Path, strategies: Specs) -> str:
    with pytest.raises(ConfigError) as excinfo:
        load_world(path, strategies)
    return _error(excinfo)


def test_good_world_template_loads(tmp_path: Path, repo_strategies: Specs) -> None:
    world = load_world(_world(tmp_path, "good"), repo_strategies)
    assert isinstance(world, WorldSpec)
    equity = sorted(s for s, spec in repo_strategies.items() if "equity" in spec.tags)
    assert len(equity) == 4 and world.members(repo_strategies) == equity  # the template selects tag equity


def test_world_unknown_metric_names_gate_path(tmp_path: Path, repo_strategies: Specs) -> None:
    stages = STAGES.replace('"sharpe_long >= 0.3"', '"sharpe_lng >= 0.3"')
    path = _world(tmp_path, "bad_metric", stages=stages)
    msg = _world_error(path, repo_strategies)
    assert _location(msg, path) == 9
    assert "stages.backtest.gates.and[0]" in msg
    assert "unknown name 'sharpe_lng'" in msg and "'sharpe_long'" in msg

    path = _world(tmp_path, "bad_metric2", stages=STAGES.replace('"max_dd_long', '"max_dd_lung'))
    msg = _world_error(path, repo_strategies)
    assert _location(msg, path) == 10
    assert "stages.backtest.gates.and[1]" in msg


def test_world_unknown_metric_in_score(tmp_path: Path, repo_strategies: Specs) -> None:
    path = _world(tmp_path, "bad_score", selection=SELECTION.replace("sharpe_mid", "sharpe_medium"))
    msg = _world_error(path, repo_strategies)
    assert _location(msg, path) == 13
    assert "selection.score" in msg and "'sharpe_mid'" in msg


def test_world_undefined_correlation_window(tmp_path: Path, repo_strategies: Specs) -> None:
    selection = SELECTION + "  correlation: {max_pairwise: 0.8, window: medium}\n"
    path = _world(tmp_path, "bad_window", selection=selection)
    msg = _world_error(path, repo_strategies)
    assert _location(msg, path) == 15
    assert "selection.correlation.window" in msg and "'medium'" in msg


def test_world_topk_larger_than_candidates(tmp_path: Path, repo_strategies: Specs) -> None:
    path = _world(tmp_path, "big_topk", selection=SELECTION.replace("total: 2", "total: 5"))
    msg = _world_error(path, repo_strategies)
    assert _location(msg, path) == 14
    assert "selection.topk.total" in msg and "5" in msg and "4 candidate" in msg
    # exactly the number of candidates is fine
    full = _world(tmp_path, "full_topk", selection=SELECTION.replace("total: 2", "total: 4"))
    assert load_world(full, repo_strategies).selection.topk.total == 4


def test_world_by_side_quota_larger_than_side(tmp_path: Path, repo_strategies: Specs) -> None:
    selection = SELECTION.replace("{total: 2}", "{total: 2, by_side: {long: 3, long_short: 2}}")
    path = _world(tmp_path, "big_side", selection=selection)
    msg = _world_error(path, repo_strategies)
    assert "selection.topk.by_side.long_short" in msg and "1 candidate long_short" in msg
    assert _location(msg, path) == 14
    ok = SELECTION.replace("{total: 2}", "{total: 2, by_side: {long: 3, long_short: 1}}")
    load_world(_world(tmp_path, "ok_side", selection=ok), repo_strategies)


def test_world_selector_matching_nothing(tmp_path: Path, repo_strategies: Specs) -> None:
    path = _world(tmp_path, "empty", selector="{tags: [crypto]}")
    msg = _world_error(path, repo_strategies)
    assert _location(msg, path) == 3
    assert "strategies" in msg and "matches no" in msg


def test_world_unknown_strategy_id(tmp_path: Path, repo_strategies: Specs) -> None:
    path = _world(tmp_path, "unknown_id", selector="{ids: [low_vol, nope]}")
    msg = _world_error(path, repo_strategies)
    assert _location(msg, path) == 3
    assert "strategies.ids" in msg and "'nope'" in msg
    assert "'low_vol'" in msg  # the known ids are listed


@pytest.mark.parametrize(
    "stages",
    [
        '  backtest: {gates: "sharpe_long >= 0.3"}\n',
        '  paper: {gates: "sharpe_paper >= 0"}\n  live: {gates: "sharpe_long >= 0"}\n',
    ],
    ids=["no_paper", "no_backtest"],
)
def test_world_missing_required_stage(tmp_path: Path, repo_strategies: Specs, stages: str) -> None:
    path = _world(tmp_path, "stages", stages=stages)
    msg = _world_error(path, repo_strategies)
    assert msg.startswith(f"{path}:")
    assert "backtest" in msg and "paper" in msg and "stages" in msg


def test_world_id_must_equal_file_name(tmp_path: Path, repo_strategies: Specs) -> None:
    path = _world(tmp_path, "core", wid="core_two")
    msg = _world_error(path, repo_strategies)
    assert _location(msg, path) == 1
    assert "'core_two'" in msg and "'core'" in msg


def test_world_unknown_key(tmp_path: Path, repo_strategies: Specs) -> None:
    path = _world(tmp_path, "typo", selection=SELECTION + "  hysterisis: {promote_after: 2}\n")
    msg = _world_error(path, repo_strategies)
    assert _location(msg, path) == 15
    assert "selection.hysterisis" in msg and "unknown key" in msg


def test_load_worlds_reports_every_bad_file(tmp_path: Path, repo_strategies: Specs) -> None:
    _world(tmp_path, "good")
    bad1 = _world(tmp_path, "bad_one", selector="{ids: [nope]}")
    bad2 = _world(tmp_path, "bad_two", selection=SELECTION.replace("total: 2", "total: 9"))
    with pytest.raises(ConfigError) as excinfo:
        load_worlds(tmp_path, repo_strategies)
    msg = _error(excinfo)
    assert str(bad1) in msg and str(bad2) in msg
    assert "good.yaml" not in msg
    assert len(msg.splitlines()) == 2


def test_repo_yaml_is_plain_safe_yaml() -> None:
    for path in [*sorted((REPO / "strategies").glob("*.yaml")), *sorted((REPO / "worlds").glob("*.yaml"))]:
        doc = yaml.safe_load(path.read_text())
        assert isinstance(doc, dict) and doc["id"] == path.stem


# ------------------------------------------------------------------------------------------- datasets


def test_unknown_dataset_lists_valid_names() -> None:
    with pytest.raises(ValueError) as excinfo:
        get_source("nope")
    for name in DATASETS:
        assert name in str(excinfo.value)
    assert "'nope'" in str(excinfo.value)
    assert get_source("embedded").name == "embedded"
    assert get_source("synthetic", n_symbols=3).name == "synthetic"


def test_market_data_resource_rejects_unknown_dataset() -> None:
    with pytest.raises(pydantic.ValidationError) as excinfo:
        MarketData(dataset="nope")
    msg = str(excinfo.value)
    assert "'nope'" in msg and "embedded" in msg and "synthetic" in msg
    assert MarketData(dataset="synthetic", synthetic_symbols=3).source().name == "synthetic"


def test_world_bad_max_lag_names_field(tmp_path: Path, repo_strategies: Specs) -> None:
    path = _world(tmp_path, "lag", selection=SELECTION + "data_currency: {max_lag: two}\n")
    msg = _world_error(path, repo_strategies)
    assert _location(msg, path) == 15
    assert "data_currency.max_lag" in msg and "'two' is not a number of sessions" in msg


@pytest.mark.parametrize(
    ("stages", "selection", "field", "line"),
    [
        (STAGES.replace("min_days: 20d", "min_days: ten"), SELECTION, "stages.paper.min_days", 11),
        (STAGES, SELECTION + "  hysteresis: {min_dwell: 5days}\n", "selection.hysteresis.min_dwell", 15),
    ],
    ids=["min_days", "min_dwell"],
)
def test_world_bad_session_count_names_field(
    tmp_path: Path, repo_strategies: Specs, stages: str, selection: str, field: str, line: int
) -> None:
    path = _world(tmp_path, "sessions", stages=stages, selection=selection)
    msg = _world_error(path, repo_strategies)
    assert "is not a number of sessions" in msg
    assert f"{path}:{line}: {field}: " in msg


def test_world_missing_stage_names_stages_field(tmp_path: Path, repo_strategies: Specs) -> None:
    path = _world(tmp_path, "stages", stages='  backtest: {gates: "sharpe_long >= 0.3"}\n')
    msg = _world_error(path, repo_strategies)
    assert msg.startswith(f"{path}:5: stages: ")


@pytest.mark.parametrize(
    ("stages", "selection", "field", "line"),
    [
        (STAGES, SELECTION + "data_currency: {max_lag: -1}\n", "data_currency.max_lag", 15),
        (STAGES.replace("min_days: 20d", "min_days: -3"), SELECTION, "stages.paper.min_days", 11),
        (STAGES, SELECTION + "  hysteresis: {min_dwell: -2}\n", "selection.hysteresis.min_dwell", 15),
    ],
    ids=["max_lag", "min_days", "min_dwell"],
)
def test_world_negative_session_count_is_rejected(
    tmp_path: Path, repo_strategies: Specs, stages: str, selection: str, field: str, line: int
) -> None:
    path = _world(tmp_path, "negative", stages=stages, selection=selection)
    msg = _world_error(path, repo_strategies)
    assert _location(msg, path) == line
    assert f": {field}: " in msg and "negative" in msg


def test_duplicate_key_is_refused_with_its_line(tmp_path: Path) -> None:
    from quantlab.strategy_lab.spec import load_strategy

    path = tmp_path / "dup.yaml"
    path.write_text("id: dup\nuniverse: {all: true}\nsignal: {score: mom_20}\nsignal: {score: mom_60}\n")
    with pytest.raises(ConfigError) as err:
        load_strategy(path)
    assert str(err.value).startswith(f"{path}:4: invalid YAML: duplicate key 'signal'")


def test_world_names_trade_counts_and_leg_metrics(tmp_path: Path, repo_strategies: Specs) -> None:
    stages = STAGES.replace('"sharpe_long >= 0.3"', '"trades_mid >= 5 and short_max_dd_long <= 0.3"')
    world = load_world(_world(tmp_path, "legs", stages=stages), repo_strategies)
    assert {"trades_mid", "short_max_dd_long"} <= world.gates["backtest"].names
    assert {f"{side}_sharpe_full" for side in ("long", "short")} <= world.metric_names
    path = _world(tmp_path, "bad_leg", stages=STAGES.replace('"sharpe_long', '"middle_sharpe_long'))
    assert "unknown name 'middle_sharpe_long'" in _world_error(path, repo_strategies)
