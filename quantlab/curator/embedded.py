"""Embedded real data: daily OHLCV of AAPL, IBM, MSFT, GOOG and FB, 2000-03-01 to 2013-03-01.

Vendored from `bokeh-sampledata==2026.1` (Quandl WIKI prices, public domain; see data/DATA.md). The file's
sha256 is verified at load. Open/high/low/close are unadjusted in the file and carry three real splits; the
adjustment factor is Adj Close / Close and is applied to open, high and low, so `close` is the adjusted close
and `close_raw` the traded one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from functools import lru_cache
from pathlib import Path

import polars as pl

DATA_FILE = Path(__file__).parent / "data" / "stocks.csv.gz"
SHA256 = "5abadf99b2d394f920120a27de6f0df129859d71d4cfb0bf661bcc99446ab1fd"
FIRST_DATE = dt.date(2000, 3, 1)
LAST_DATE = dt.date(2013, 3, 1)

REGISTRY = pl.DataFrame(
    {
        "symbol": ["AAPL", "FB", "GOOG", "IBM", "MSFT"],
        "name": [
            "Apple Inc.",
            "Facebook Inc.",
            "Google Inc.",
            "International Business Machines",
            "Microsoft",
        ],
        "sector": [
            "Technology",
            "Communication Services",
            "Communication Services",
            "Technology",
            "Technology",
        ],
    }
)


class DataIntegrityError(RuntimeError):
    """The vendored data file does not match its recorded checksum."""


@lru_cache(maxsize=1)
def embedded_ohlcv() -> pl.DataFrame:
    """All embedded bars in the OHLCV contract, sorted by symbol and date."""
    raw = DATA_FILE.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != SHA256:
        raise DataIntegrityError(f"{DATA_FILE} has sha256 {digest}, expected {SHA256} (see data/DATA.md)")
    df = pl.read_csv(raw, try_parse_dates=True)
    factor = pl.col("Adj Close") / pl.col("Close")
    return df.select(
        pl.col("Ticker").alias("symbol"),
        pl.col("Date").cast(pl.Date).alias("date"),
        (pl.col("Open") * factor).alias("open"),
        (pl.col("High") * factor).alias("high"),
        (pl.col("Low") * factor).alias("low"),
        pl.col("Adj Close").cast(pl.Float64).alias("close"),
        pl.col("Close").cast(pl.Float64).alias("close_raw"),
        factor.alias("adj_factor"),
        pl.col("Volume").cast(pl.Int64).alias("volume"),
    ).sort("symbol", "date")
