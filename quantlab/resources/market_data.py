"""Market-data resource: which dataset feeds `ohlcv` (QUANTLAB_DATASET, default `embedded`)."""

from __future__ import annotations

import os
from typing import Literal

import dagster as dg
from pydantic import Field, field_validator

from quantlab.curator.alphavantage import BASE_URL, AlphaVantageClient, AlphaVantageSource
from quantlab.curator.sources import DATASETS, Source, get_source

API_KEY_ENV = "ALPHAVANTAGE_API_KEY"


def _env_symbols() -> list[str]:
    raw = os.environ.get("QUANTLAB_ALPHAVANTAGE_SYMBOLS", "")
    return [s.strip().upper() for s in raw.split(",") if s.strip()]


class AlphaVantageConfig(dg.Config):
    """Alpha Vantage settings. The key is given as `dg.EnvVar("ALPHAVANTAGE_API_KEY")` (never a literal):
    Dagster stores the variable's name, not its value, and quantlab never logs it."""

    api_key: str | None = Field(default=None, description=f"Set with dg.EnvVar('{API_KEY_ENV}').")
    symbols: list[str] = Field(
        default_factory=_env_symbols,
        description="Symbols to load (QUANTLAB_ALPHAVANTAGE_SYMBOLS, comma-separated).",
    )
    adjusted: bool = Field(
        default=False,
        description="TIME_SERIES_DAILY_ADJUSTED (splits and dividends; a premium endpoint) instead of TIME_SERIES_DAILY.",
    )
    outputsize: Literal["auto", "compact", "full"] = Field(
        default="auto",
        description="auto: compact (latest 100 bars) when the range is recent enough, else full.",
    )
    datatype: Literal["json", "csv"] = "json"
    base_url: str = BASE_URL
    retry_budget_s: float = Field(
        default=120.0, ge=0, description="Seconds we may wait backing off rate limits."
    )
    backoff_s: float = Field(default=15.0, ge=0, description="First back-off wait; doubles per retry.")

    def source(self) -> AlphaVantageSource:
        client = AlphaVantageClient(
            api_key=self.api_key or "",
            base_url=self.base_url,
            retry_budget_s=self.retry_budget_s,
            backoff_s=self.backoff_s,
            logger=dg.get_dagster_logger("alphavantage"),
        )
        return AlphaVantageSource(
            client=client,
            symbols=tuple(self.symbols),
            adjusted=self.adjusted,
            outputsize=self.outputsize,
            datatype=self.datatype,
        )


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
    alphavantage: AlphaVantageConfig = Field(default_factory=AlphaVantageConfig)

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
            alphavantage=self.alphavantage.source() if self.dataset == "alphavantage" else None,
        )


def default_market_data() -> MarketData:
    """The resource as `quantlab.definitions` configures it: the Alpha Vantage key through an `EnvVar`
    when ALPHAVANTAGE_API_KEY is set (an unset EnvVar would fail every run, even on other datasets)."""
    if os.environ.get(API_KEY_ENV):
        return MarketData(alphavantage=AlphaVantageConfig(api_key=dg.EnvVar(API_KEY_ENV)))
    return MarketData()
