"""Loading user YAML (strategies, worlds, supervisor rules) into strict pydantic models.

YAML is read with a `yaml.SafeLoader` (safe_load's loader) that also refuses duplicate keys; models forbid
unknown keys. Any problem raises `ConfigError` whose message names the file, the line, the field and the
reason, e.g.
`strategies/momentum.yaml:7: portfolio.long.top: Input should be greater than or equal to 1`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    """Base of every configuration model: unknown keys are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ConfigError(ValueError):
    """A configuration file is invalid; the message names file, line, field and reason."""


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """Line (1-based) of the deepest YAML key or item at `loc` that exists."""
    line = node.start_mark.line + 1 if node is not None else None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            pair = next(((k, v) for k, v in node.value if k.value == key), None)
            if pair is None:
                return line
            line, node = pair[0].start_mark.line + 1, pair[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            break
    return line


class _UniqueKeyLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses a key given twice in one mapping (safe_load keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key '{key}'", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml_model(path: Path, model: type[M], check: Callable[[M], None] | None = None) -> M:
    """Parse `path` into `model`; `check` may add semantic validation (raise ValueError with a field path)."""
    text = path.read_text()
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: the file must hold a mapping of settings")
    try:
        obj = model.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
            field = ".".join(str(p) for p in loc) or "(top level)"
            reason = "unknown key (not allowed here)" if err["type"] == "extra_forbidden" else err["msg"]
            lines.append(f"{path}:{_line_of(node, loc) or 1}: {field}: {reason}")
        raise ConfigError("\n".join(lines)) from None
    if check is not None:
        try:
            check(obj)
        except ConfigError:
            raise
        except ValueError as exc:
            field, _, reason = str(exc).partition(": ")
            loc = tuple(
                int(p) if p.isdigit() else p for p in field.replace("[", ".").replace("]", "").split(".")
            )
            raise ConfigError(f"{path}:{_line_of(node, loc) or 1}: {field}: {reason or exc}") from None
    return obj


def load_directory(directory: Path, load: Callable[[Path], M]) -> dict[str, M]:
    """Every `*.yaml` in `directory` parsed by `load`, by id (sorted by file name); the errors of all bad
    files are reported together in one ConfigError."""
    items, errors = {}, []
    for path in sorted(Path(directory).glob("*.yaml")):
        try:
            item = load(path)
        except ConfigError as exc:
            errors.append(str(exc))
            continue
        items[item.id] = item
    if errors:
        raise ConfigError("\n".join(errors))
    return items
