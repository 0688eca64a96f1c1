"""Curator settings: `curator.yaml` in the project (quality thresholds, anomaly sentinel); defaults if absent."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from quantlab.config import Strict, load_yaml_model
from quantlab.curator.anomaly import AnomalySettings


class QualitySettings(Strict):
    """Thresholds of the quality gate (`quantlab.curator.quality`)."""

    jump_threshold: float = Field(
        default=0.4, gt=0, description="extreme_jump: |adjusted close move| vs the previous bar above this."
    )
    max_lag_sessions: int = Field(
        default=0,
        ge=0,
        description="stale_data: sessions a symbol's newest bar may lag the as-of date (0: the as-of "
        "session's bar must be there).",
    )


class CuratorSpec(Strict):
    quality: QualitySettings = QualitySettings()
    anomaly: AnomalySettings = AnomalySettings()


def load_curator(path: Path) -> CuratorSpec:
    """`curator.yaml` if it exists, else the defaults."""
    return load_yaml_model(path, CuratorSpec) if path.exists() else CuratorSpec()
