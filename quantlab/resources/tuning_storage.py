"""Where Optuna keeps tuning studies (RDB storage) and how many trials run at once."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import dagster as dg
import optuna
from pydantic import Field
from sqlalchemy.engine import make_url

STORAGE_ENV = "QUANTLAB_TUNING_STORAGE"
DEFAULT_FILE = "optuna_studies.db"


class TuningStorage(dg.ConfigurableResource):
    """Optuna RDB storage: any SQLAlchemy URL (e.g. `postgresql://...` shared by a team; give a URL holding
    a password as `dg.EnvVar`), by default a SQLite file `optuna_studies.db` next to the warehouse.
    `workers` trials run in parallel threads of the step, all writing to the same storage."""

    url: str = Field(
        default="", description=f"SQLAlchemy URL (default: sqlite next to the warehouse; env {STORAGE_ENV})."
    )
    workers: int = Field(default=1, ge=1, le=64, description="Trials run in parallel (threads).")

    def resolve(self, warehouse_path: str) -> str:
        """The storage URL: `url`, else `sqlite:///<warehouse dir>/optuna_studies.db`."""
        if self.url:
            return self.url
        if not warehouse_path or warehouse_path.startswith(":"):
            raise ValueError("an in-memory warehouse has no directory: configure tuning_storage.url")
        directory = Path(warehouse_path).resolve().parent
        directory.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{directory / DEFAULT_FILE}"

    def open(self, warehouse_path: str) -> optuna.storages.RDBStorage:
        """The storage; trials whose process died are failed after a missed heartbeat (resume is clean)."""
        url = self.resolve(warehouse_path)
        kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
        with warnings.catch_warnings():  # heartbeats are "experimental" in optuna 5: a known, chosen API
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url, engine_kwargs=kwargs, heartbeat_interval=30, grace_period=120
            )


def display_url(url: str) -> str:
    """The URL with any password masked (what logs and metadata show)."""
    return make_url(url).render_as_string(hide_password=True)


def default_tuning_storage() -> TuningStorage:
    """`QUANTLAB_TUNING_STORAGE` (read through `dg.EnvVar`, so Dagster never stores its value) or the default."""
    if os.environ.get(STORAGE_ENV):
        return TuningStorage(url=dg.EnvVar(STORAGE_ENV))
    return TuningStorage()
