"""Market-data sources behind one interface, chosen by name (the `dataset` setting).

Every source returns frames in the OHLCV contract (`quantlab.schemas.Ohlcv`): symbol, date, adjusted
open/high/low/close, close_raw, adj_factor, volume.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import polars as pl

from quantlab.curator import embedded, synthetic
from quantlab.curator.alphavantage import AlphaVantageSource
from quantlab.curator.files import FilesSource


class Source(Protocol):
    name: str

    def bars(self, start: dt.date, end: dt.date) -> pl.DataFrame:
        """Bars dated in [start, end]."""
        ...

    def registry(self) -> pl.DataFrame:
        """symbol, name, sector of every symbol the source knows."""
        ...


@dataclass(frozen=True)
class EmbeddedSource:
    """The vendored real data (offline; the default)."""

    name: str = "embedded"

    def bars(self, start: dt.date, end: dt.date) -> pl.DataFrame:
        return embedded.embedded_ohlcv().filter(pl.col("date").is_between(start, end))

    def registry(self) -> pl.DataFrame:
        return embedded.REGISTRY


@dataclass(frozen=True)
class SyntheticSource:
    """A deterministic synthetic universe that reaches today (benchmarks, scheduled runs)."""

    n_symbols: int = 50
    seed: int = 7
    name: str = "synthetic"

    def bars(self, start: dt.date, end: dt.date) -> pl.DataFrame:
        return synthetic.synthetic_ohlcv(self.n_symbols, start, end, seed=self.seed)

    def registry(self) -> pl.DataFrame:
        return synthetic.synthetic_registry(self.n_symbols, seed=self.seed)


@dataclass(frozen=True)
class FrameSource:
    """Bars already in memory (tests, benchmarks, notebooks): serves `frame`, lists `listed` (or its symbols)."""

    frame: pl.DataFrame
    listed: pl.DataFrame | None = None
    name: str = "frame"

    def bars(self, start: dt.date, end: dt.date) -> pl.DataFrame:
        return self.frame.filter(pl.col("date").is_between(start, end))

    def registry(self) -> pl.DataFrame:
        if self.listed is not None:
            return self.listed
        symbols = self.frame.get_column("symbol").unique().sort()
        return pl.DataFrame({"symbol": symbols, "name": symbols, "sector": ["unknown"] * len(symbols)})


DATASETS = ("embedded", "synthetic", "files", "alphavantage")


def get_source(
    dataset: str,
    *,
    n_symbols: int = 50,
    seed: int = 7,
    files_path: str | None = None,
    files_columns: Mapping[str, str] | None = None,
    files_date_format: str | None = None,
    alphavantage: AlphaVantageSource | None = None,
) -> Source:
    """The source for a dataset name; ValueError listing the valid names otherwise.

    `alphavantage` is the configured Alpha Vantage source (client, key and symbols come from the
    `MarketData` resource, the key through a Dagster `EnvVar`).
    """
    if dataset == "embedded":
        return EmbeddedSource()
    if dataset == "synthetic":
        return SyntheticSource(n_symbols=n_symbols, seed=seed)
    if dataset == "files":
        if not files_path:
            raise ValueError(
                "dataset 'files' needs a path (QUANTLAB_FILES_PATH or the resource's files_path)"
            )
        return FilesSource(files_path, columns=dict(files_columns or {}), date_format=files_date_format)
    if dataset == "alphavantage":
        if alphavantage is None or not alphavantage.symbols:
            raise ValueError(
                "dataset 'alphavantage' needs symbols (QUANTLAB_ALPHAVANTAGE_SYMBOLS or the resource's "
                "alphavantage.symbols) and a key (ALPHAVANTAGE_API_KEY)"
            )
        return alphavantage
    raise ValueError(f"unknown dataset '{dataset}': valid datasets are {', '.join(DATASETS)}")
