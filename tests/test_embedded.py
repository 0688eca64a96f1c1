"""Tests for the vendored real data (`quantlab.curator.embedded`): shape, calendar, OHLC, splits, checksum."""

from __future__ import annotations

import datetime as dt
import gzip
import shutil
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from quantlab.calendar import sessions
from quantlab.curator import embedded
from quantlab.curator.contract import OHLCV_COLUMNS
from quantlab.curator.embedded import DataIntegrityError, embedded_ohlcv
from quantlab.curator.sources import get_source
from quantlab.schemas import TABLES

SPLITS = [("AAPL", dt.date(2000, 6, 21)), ("AAPL", dt.date(2005, 2, 28)), ("MSFT", dt.date(2003, 2, 18))]


@pytest.fixture(scope="module")
def bars() -> pl.DataFrame:
    return embedded_ohlcv()


@pytest.fixture
def fresh_cache() -> Iterator[None]:
    embedded.embedded_ohlcv.cache_clear()
    yield
    embedded.embedded_ohlcv.cache_clear()


def with_returns(bars: pl.DataFrame) -> pl.DataFrame:
    return bars.sort("symbol", "date").with_columns(
        r=(pl.col("close") / pl.col("close").shift() - 1).over("symbol"),
        raw_ratio=(pl.col("close_raw") / pl.col("close_raw").shift()).over("symbol"),
        factor_ratio=(pl.col("adj_factor") / pl.col("adj_factor").shift()).over("symbol"),
    )


def test_shape_symbols_and_range(bars: pl.DataFrame) -> None:
    assert bars.height == 12_154
    assert tuple(bars.columns) == OHLCV_COLUMNS
    assert sorted(bars.get_column("symbol").unique()) == ["AAPL", "FB", "GOOG", "IBM", "MSFT"]
    assert bars.get_column("date").min() == embedded.FIRST_DATE
    assert bars.get_column("date").max() == embedded.LAST_DATE
    assert bars.select("symbol", "date").is_duplicated().sum() == 0
    assert bars.equals(bars.sort("symbol", "date"))
    assert bars.null_count().sum_horizontal().item() == 0
    TABLES["ohlcv"].schema.validate(bars)
    first = dict(bars.group_by("symbol").agg(pl.col("date").min()).iter_rows())
    assert first["FB"] == dt.date(2012, 5, 18)  # IPO
    assert first["GOOG"] == dt.date(2004, 8, 19)  # IPO
    assert set(bars.get_column("symbol").unique()) == set(embedded.REGISTRY.get_column("symbol"))


def test_every_date_is_an_nyse_session(bars: pl.DataFrame) -> None:
    valid = set(sessions(embedded.FIRST_DATE, embedded.LAST_DATE))
    dates = set(bars.get_column("date").unique())
    assert dates <= valid
    assert not (dates - valid)
    # symbols listed for the whole period trade on every session (no gaps)
    counts = dict(bars.group_by("symbol").len().iter_rows())
    assert counts["AAPL"] == counts["IBM"] == counts["MSFT"] == len(valid)


def test_ohlc_relations(bars: pl.DataFrame) -> None:
    tol = 1e-9
    bad = bars.filter(
        (pl.col("high") < pl.max_horizontal("open", "close", "low") * (1 - tol))
        | (pl.col("low") > pl.min_horizontal("open", "close", "high") * (1 + tol))
        | (pl.col("low") <= 0)
        | (pl.col("volume") < 0)
    )
    assert bad.is_empty(), bad.head()


def test_adjusted_close_is_raw_close_times_factor(bars: pl.DataFrame) -> None:
    rel = ((pl.col("close_raw") * pl.col("adj_factor") - pl.col("close")).abs() / pl.col("close")).max()
    assert bars.select(rel).item() < 1e-12
    assert bars.select((pl.col("adj_factor") > 0).all()).item()
    # the factor only ever steps at splits and dividends: it never moves down by more than a dividend
    steps = with_returns(bars).get_column("factor_ratio").drop_nulls()
    assert steps.min() > 0.9


@pytest.mark.parametrize(("symbol", "day"), SPLITS, ids=[f"{s}-{d}" for s, d in SPLITS])
def test_splits_are_continuous_in_adjusted_series(bars: pl.DataFrame, symbol: str, day: dt.date) -> None:
    row = with_returns(bars).filter((pl.col("symbol") == symbol) & (pl.col("date") == day)).row(0, named=True)
    assert row["raw_ratio"] == pytest.approx(0.5, abs=0.06)  # the traded close halves
    assert row["factor_ratio"] == pytest.approx(2.0, rel=1e-3)
    assert abs(row["r"]) < 0.2  # the adjusted close barely moves
    # the adjusted open also continues from the previous adjusted close
    prev = bars.filter((pl.col("symbol") == symbol) & (pl.col("date") < day)).row(-1, named=True)
    assert abs(row["open"] / prev["close"] - 1) < 0.2


def test_no_other_split_like_jump(bars: pl.DataFrame) -> None:
    big_steps = with_returns(bars).filter((pl.col("factor_ratio") - 1).abs() > 0.2)
    jumps = big_steps.select("symbol", "date").rows()
    assert sorted(jumps) == sorted(SPLITS)
    # the only raw halving that is not a split is a real market move (AAPL, 2000-09-29), adjusted alike
    halvings = with_returns(bars).filter(pl.col("raw_ratio") < 0.6)
    other = halvings.filter(~pl.struct("symbol", "date").is_in([{"symbol": s, "date": d} for s, d in SPLITS]))
    assert other.select("symbol", "date").rows() == [("AAPL", dt.date(2000, 9, 29))]
    assert other.get_column("r").item() == pytest.approx(other.get_column("raw_ratio").item() - 1, rel=1e-6)


def test_embedded_source_filters_dates(bars: pl.DataFrame) -> None:
    part = get_source("embedded").bars(dt.date(2012, 5, 17), dt.date(2012, 5, 21))
    assert part.get_column("date").unique().sort().to_list() == [
        dt.date(2012, 5, 17),
        dt.date(2012, 5, 18),
        dt.date(2012, 5, 21),
    ]
    assert part.filter(pl.col("symbol") == "FB").height == 2
    assert part.height == 3 * 4 + 2


def test_copy_of_data_file_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_cache: None, bars: pl.DataFrame
) -> None:
    copy = tmp_path / "stocks.csv.gz"
    shutil.copyfile(embedded.DATA_FILE, copy)
    monkeypatch.setattr(embedded, "DATA_FILE", copy)
    assert embedded_ohlcv().equals(bars)


@pytest.mark.parametrize("how", ["flip_byte", "recompressed", "truncated"])
def test_corrupted_data_file_fails_checksum(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_cache: None, how: str
) -> None:
    raw = embedded.DATA_FILE.read_bytes()
    if how == "flip_byte":
        i = len(raw) // 2
        data = raw[:i] + bytes([raw[i] ^ 0x01]) + raw[i + 1 :]
    elif how == "recompressed":  # same CSV content, different bytes: still refused
        data = gzip.compress(gzip.decompress(raw), compresslevel=1, mtime=0)
    else:
        data = raw[:-100]
    bad = tmp_path / "stocks.csv.gz"
    bad.write_bytes(data)
    monkeypatch.setattr(embedded, "DATA_FILE", bad)
    with pytest.raises(DataIntegrityError) as excinfo:
        embedded_ohlcv()
    msg = str(excinfo.value)
    assert str(bad) in msg and embedded.SHA256 in msg and "sha256" in msg
