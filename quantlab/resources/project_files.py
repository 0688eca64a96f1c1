"""Resource locating the user's configuration (strategies/, worlds/, supervisor.yaml) and run artifacts."""

import os
from pathlib import Path

import dagster as dg
from pydantic import Field

from quantlab.project import Project, project_dir


class ProjectFiles(dg.ConfigurableResource):
    """Where the strategy, world and supervisor files are; `load()` parses and validates them."""

    root: str = Field(
        default_factory=lambda: str(project_dir()), description="Directory holding strategies/."
    )

    artifacts: str = Field(
        default_factory=lambda: os.environ.get("QUANTLAB_ARTIFACTS", ""),
        description="Root of the run artifacts (default: <root>/artifacts); runs write <artifacts>/runs/<run_id>/.",
    )

    def load(self) -> Project:
        return Project(Path(self.root))

    def artifacts_dir(self) -> Path:
        """`<artifacts>`: QUANTLAB_ARTIFACTS, else `<root>/artifacts`."""
        return Path(self.artifacts or Path(self.root) / "artifacts")

    def run_dir(self, run_id: str) -> Path:
        """`<artifacts>/runs/<run_id>`, created."""
        path = self.artifacts_dir() / "runs" / run_id
        path.mkdir(parents=True, exist_ok=True)
        return path
