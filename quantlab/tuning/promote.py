"""Promotion: a trial's parameters become the next version of the strategy file, only when the user asks
(`quantlab tune promote`). The previous file is kept in `strategies/.history/<id>.v<version>.yaml` (not
loaded as a strategy); the new file keeps the same id, so every trial of the strategy's studies keeps
counting in its deflated Sharpe."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from quantlab.config import ConfigError
from quantlab.strategy_lab.spec import StrategySpec, apply_params, load_strategy


def history_path(path: Path, version: int) -> Path:
    return path.parent / ".history" / f"{path.stem}.v{version}.yaml"


def changes(spec: StrategySpec, params: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """dotted path -> (current value, trial value) for the parameters that differ."""
    current = spec.model_dump(mode="json")
    out = {}
    for dotted, value in params.items():
        node: Any = current
        for key in dotted.split("."):
            node = node.get(key) if isinstance(node, dict) else None
        if node != value:
            out[dotted] = (node, value)
    return out


def promote(path: Path, params: Mapping[str, Any], provenance: str) -> tuple[StrategySpec, Path]:
    """Rewrite the strategy file at `path` with `params` set and its version bumped; returns the new spec
    and where the previous file was kept. The YAML is rewritten from its parsed content (comments are not
    kept; `provenance` becomes the header comment). Raises ValueError (nothing written) if the parameters
    do not give a valid strategy."""
    current = load_strategy(path)
    apply_params(current, params)  # validates the combination before anything is written
    raw = yaml.safe_load(path.read_text())
    for dotted, value in params.items():
        node = raw
        *parents, leaf = dotted.split(".")
        for key in parents:  # a section the file leaves to its defaults is written out
            node = node.setdefault(key, {})
        node[leaf] = value
    raw["version"] = current.version + 1
    header = f"# version {raw['version']}: {provenance} ({dt.date.today().isoformat()})\n"
    backup = history_path(path, current.version)
    backup.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(path, backup)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(header + yaml.safe_dump(raw, sort_keys=False, default_flow_style=None, width=110))
    os.replace(tmp, path)
    try:
        return load_strategy(path), backup
    except ConfigError:
        shutil.copy2(backup, path)  # put the previous version back
        raise
