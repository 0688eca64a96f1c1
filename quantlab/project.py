"""Where the user's files live and how they are loaded (strategies/, worlds/, feature_sets/, supervisor.yaml, curator.yaml)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from quantlab.curator.settings import CuratorSpec, load_curator
from quantlab.features.sets import FeatureSet, load_feature_sets
from quantlab.strategy_lab.spec import StrategySpec, load_strategies
from quantlab.supervisor.spec import SupervisorSpec, load_supervisor
from quantlab.world.spec import WorldSpec, load_worlds


def project_dir() -> Path:
    """`QUANTLAB_PROJECT_DIR`, else the repository holding this package, else the working directory."""
    if env := os.environ.get("QUANTLAB_PROJECT_DIR"):
        return Path(env).resolve()
    repo = Path(__file__).resolve().parents[1]
    return repo if (repo / "strategies").is_dir() else Path.cwd()


@dataclass(frozen=True)
class Project:
    """The user's configuration, parsed and validated together (worlds are checked against strategies)."""

    root: Path

    @cached_property
    def strategies(self) -> dict[str, StrategySpec]:
        return load_strategies(self.root / "strategies")

    @cached_property
    def worlds(self) -> dict[str, WorldSpec]:
        return load_worlds(self.root / "worlds", self.strategies)

    @cached_property
    def feature_sets(self) -> dict[str, FeatureSet]:
        return load_feature_sets(self.root / "feature_sets")

    @cached_property
    def curator(self) -> CuratorSpec:
        return load_curator(self.root / "curator.yaml")

    @cached_property
    def supervisor(self) -> SupervisorSpec:
        return load_supervisor(self.root / "supervisor.yaml")


def load_project(root: Path | None = None) -> Project:
    return Project(root or project_dir())
