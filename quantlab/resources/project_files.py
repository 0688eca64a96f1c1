"""Resource locating the user's configuration (strategies/, worlds/, supervisor.yaml)."""

from pathlib import Path

import dagster as dg
from pydantic import Field

from quantlab.project import Project, project_dir


class ProjectFiles(dg.ConfigurableResource):
    """Where the strategy, world and supervisor files are; `load()` parses and validates them."""

    root: str = Field(
        default_factory=lambda: str(project_dir()), description="Directory holding strategies/."
    )

    def load(self) -> Project:
        return Project(Path(self.root))
