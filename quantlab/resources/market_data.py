"""Market-data resource: which dataset feeds `ohlcv` (QUANTLAB_DATASET, default `embedded`)."""

from __future__ import annotations

import os

import dagster as dg
from pydantic import Field, field_validator

from quantlab.curator.sources import DATASETS, Source, get_source


class MarketData(dg.ConfigurableResource):
    """Chooses the OHLCV source by name; synthetic universes take a size and a seed."""

    dataset: str = Field(
        default_factory=lambda: os.environ.get("QUANTLAB_DATASET", "embedded"),
        description=f"One of {', '.join(DATASETS)}.",
    )
    synthetic_symbols: int = Field(
        default_factory=lambda: int(os.environ.get("QUANTLAB_SYNTHETIC_SYMBOLS", "50"))
    )
    seed: int = 7
    files_path: str | None = Field(
        default_factory=lambda: os.environ.get("QUANTLAB_FILES_PATH"),
        description="dataset 'files': a folder of per-symbol CSV/Parquet files, or one long file.",
    )
    files_columns: dict[str, str] = Field(default_factory=dict, description="Our column name -> the file's.")
    files_date_format: str | None = Field(
        default=None, description="strptime format of the dates (ISO if unset)."
    )

    @field_validator("dataset")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in DATASETS:
            raise ValueError(f"unknown dataset '{value}': valid datasets are {', '.join(DATASETS)}")
        return value

    def source(self) -> Source:
        return get_source(
            self.dataset,
            n_symbols=self.synthetic_symbols,
            seed=self.seed,
            files_path=self.files_path,
            files_columns=self.files_columns,
            files_date_format=self.files_date_format,
        )
