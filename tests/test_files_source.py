"""FilesSource: the user's CSV / Parquet files in the OHLCV contract; bad input rejected or passed through."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import polars as pl
import pytest

from quantlab.curator.contract import OHLCV_SCHEMA
from quantlab.curator.files import FilesSource, SourceDataError
from quantlab.curator.quality import quality_issues
from quantlab.schemas import Ohlcv

D = dt.date
ALL = (D(2000, 1, 1), D(2100, 1, 1))
HEADER = "date,open,high,low,close,volume\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def per_symbol_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "bars"
    folder.mkdir()
    write(
        folder / "aapl.csv",
        HEADER
        + "2024-01-02,10,11,9,10.5,100\n2024-01-03,10.5,12,10,11,200\n2024-01-04,11,11.5,10.5,11,300\n",
    )
    write(folder / "msft.csv", HEADER + "2024-01-02,50,51,49,50.5,1000\n2024-01-03,50.5,52,50,51,2000\n")
    write(folder / "notes.txt", "ignored")
    return folder


def bars(source: FilesSource) -> pl.DataFrame:
    return source.bars(*ALL)


def test_folder_of_per_symbol_csvs(tmp_path: Path) -> None:
    out = bars(FilesSource(str(per_symbol_folder(tmp_path))))
    assert out.schema == pl.Schema(OHLCV_SCHEMA)
    assert out.columns == list(Ohlcv.columns)
    Ohlcv.validate(out)
    assert out["symbol"].to_list() == ["AAPL"] * 3 + ["MSFT"] * 2
    assert out["date"].to_list()[:3] == [D(2024, 1, 2), D(2024, 1, 3), D(2024, 1, 4)]
    assert out["adj_factor"].to_list() == [1.0] * 5
    assert out["close"].to_list() == out["close_raw"].to_list()
    assert out.row(0, named=True) == {
        "symbol": "AAPL",
        "date": D(2024, 1, 2),
        "open": 10.0,
        "high": 11.0,
        "low": 9.0,
        "close": 10.5,
        "close_raw": 10.5,
        "adj_factor": 1.0,
        "volume": 100,
    }


def test_long_csv_with_custom_columns_and_date_format(tmp_path: Path) -> None:
    file = write(
        tmp_path / "all.csv",
        "Ticker;Day;O;H;L;C;Vol\n"
        "IBM;03/01/2024;100;101;99;100.5;10\n"
        "AAPL;02/01/2024;10;11;9;10.5;20\n"
        "IBM;02/01/2024;99;100;98;99.5;30\n"
        "AAPL;31/01/2024;12;13;11;12.5;40\n".replace(";", ","),
    )
    source = FilesSource(
        str(file),
        columns={
            "symbol": "Ticker",
            "date": "Day",
            "open": "O",
            "high": "H",
            "low": "L",
            "close": "C",
            "volume": "Vol",
        },
        date_format="%d/%m/%Y",
    )
    out = bars(source)
    Ohlcv.validate(out)
    assert out.select("symbol", "date", "volume").rows() == [
        ("AAPL", D(2024, 1, 2), 20),
        ("AAPL", D(2024, 1, 31), 40),
        ("IBM", D(2024, 1, 2), 30),
        ("IBM", D(2024, 1, 3), 10),
    ]
    assert source.registry().rows() == [("AAPL", "AAPL", "unknown"), ("IBM", "IBM", "unknown")]


def test_long_file_requires_a_symbol_column(tmp_path: Path) -> None:
    file = write(tmp_path / "all.csv", HEADER + "2024-01-02,10,11,9,10.5,100\n")
    with pytest.raises(SourceDataError, match=r"all\.csv.*symbol"):
        bars(FilesSource(str(file)))


def test_parquet_and_mixed_folder(tmp_path: Path) -> None:
    folder = per_symbol_folder(tmp_path)
    pl.DataFrame(
        {
            "date": [D(2024, 1, 3), D(2024, 1, 2)],
            "open": [5.0, 4.0],
            "high": [6.0, 5.0],
            "low": [4.5, 3.5],
            "close": [5.5, 4.5],
            "volume": [7, 8],
        }
    ).write_parquet(folder / "goog.parquet")
    source = FilesSource(str(folder))
    out = bars(source)
    Ohlcv.validate(out)
    goog = out.filter(pl.col("symbol") == "GOOG")
    assert goog["date"].to_list() == [D(2024, 1, 2), D(2024, 1, 3)]
    assert goog["close"].to_list() == [4.5, 5.5]
    assert goog["volume"].to_list() == [8, 7]
    assert out["symbol"].unique(maintain_order=True).to_list() == ["AAPL", "GOOG", "MSFT"]
    assert source.registry()["symbol"].to_list() == ["AAPL", "GOOG", "MSFT"]

    long = tmp_path / "long.parquet"
    pl.DataFrame(
        {
            "symbol": ["X", "X"],
            "date": ["2024-01-02", "2024-01-03"],
            "open": [1, 2],
            "high": [1, 2],
            "low": [1, 2],
            "close": [1, 2],
            "volume": [1.0, 2.0],
        }
    ).write_parquet(long)
    out = bars(FilesSource(str(long)))
    assert out.schema == pl.Schema(OHLCV_SCHEMA)
    assert out["volume"].to_list() == [1, 2]


def test_adj_close_with_a_split(tmp_path: Path) -> None:
    # a 2:1 split on 2024-01-04: raw prices halve, the adjusted series stays continuous
    write(
        tmp_path / "abc.csv",
        "date,open,high,low,close,adj_close,volume\n"
        "2024-01-02,100,102,98,100,50,10\n"
        "2024-01-03,100,104,99,102,51,10\n"
        "2024-01-04,51,52,50,51,51,20\n"
        "2024-01-05,51,53,50,52,52,20\n",
    )
    out = bars(FilesSource(str(tmp_path)))
    Ohlcv.validate(out)
    assert out["adj_factor"].to_list() == [0.5, 0.5, 1.0, 1.0]
    assert out["close_raw"].to_list() == [100.0, 102.0, 51.0, 52.0]
    assert out["close"].to_list() == [50.0, 51.0, 51.0, 52.0]
    assert out["open"].to_list() == [50.0, 50.0, 51.0, 51.0]
    assert out["high"].to_list() == [51.0, 52.0, 52.0, 53.0]
    assert out["low"].to_list() == [49.0, 49.5, 50.0, 50.0]
    returns = out["close"].pct_change().drop_nulls()
    assert returns.abs().max() < 0.05  # no split jump in the adjusted series
    assert out["close_raw"].pct_change().drop_nulls().min() < -0.4  # the raw one has it


def test_range_filter(tmp_path: Path) -> None:
    source = FilesSource(str(per_symbol_folder(tmp_path)))
    out = source.bars(D(2024, 1, 3), D(2024, 1, 3))
    assert out.select("symbol", "date").rows() == [("AAPL", D(2024, 1, 3)), ("MSFT", D(2024, 1, 3))]
    inclusive = source.bars(D(2024, 1, 2), D(2024, 1, 4))
    assert inclusive.height == 5
    empty = source.bars(D(2030, 1, 1), D(2030, 12, 31))
    assert empty.height == 0
    assert empty.schema == pl.Schema(OHLCV_SCHEMA)


def test_registry(tmp_path: Path) -> None:
    reg = FilesSource(str(per_symbol_folder(tmp_path))).registry()
    assert reg.schema == pl.Schema({"symbol": pl.String, "name": pl.String, "sector": pl.String})
    assert reg.rows() == [("AAPL", "AAPL", "unknown"), ("MSFT", "MSFT", "unknown")]


# --- rejected: what the source cannot parse -------------------------------------------------------------


def test_missing_columns(tmp_path: Path) -> None:
    write(tmp_path / "bad.csv", "date,open,close\n2024-01-02,1,1\n")
    with pytest.raises(SourceDataError) as err:
        bars(FilesSource(str(tmp_path)))
    msg = str(err.value)
    assert "bad.csv" in msg
    assert "high" in msg and "low" in msg and "volume" in msg
    assert "['date', 'open', 'close']" in msg


def test_missing_mapped_column_names_the_file_column(tmp_path: Path) -> None:
    file = write(tmp_path / "x.csv", HEADER + "2024-01-02,1,1,1,1,1\n")
    with pytest.raises(SourceDataError, match=r"x\.csv.*symbol \(as 'Ticker'\)"):
        bars(FilesSource(str(file), columns={"symbol": "Ticker"}))


def test_unknown_column_mapping() -> None:
    with pytest.raises(ValueError, match="unknown column names"):
        FilesSource("x", columns={"price": "Close"})


def test_unparseable_dates(tmp_path: Path) -> None:
    rows = ["2024-01-02,1,1,1,1,1", "02/01/2024,1,1,1,1,1", "2024-01-04,1,1,1,1,1"]
    rows += [f"bad{i},1,1,1,1,1" for i in range(6)]
    write(tmp_path / "dates.csv", HEADER + "\n".join(rows) + "\n")
    with pytest.raises(SourceDataError) as err:
        bars(FilesSource(str(tmp_path)))
    msg = str(err.value)
    assert "dates.csv" in msg and "'date'" in msg
    assert "7 row(s)" in msg
    assert "row 2: '02/01/2024'" in msg
    assert "row 7: 'bad3'" in msg
    assert "bad4" not in msg  # at most 5 shown
    assert "and 2 more" in msg


def test_wrong_date_format_is_unparseable(tmp_path: Path) -> None:
    write(tmp_path / "a.csv", HEADER + "2024-01-02,1,1,1,1,1\n")
    with pytest.raises(SourceDataError, match=r"a\.csv.*%d/%m/%Y"):
        bars(FilesSource(str(tmp_path), date_format="%d/%m/%Y"))


def test_non_numeric_price(tmp_path: Path) -> None:
    write(tmp_path / "px.csv", HEADER + "2024-01-02,1,1,1,1,1\n2024-01-03,1,n/a,1,1,1\n")
    with pytest.raises(SourceDataError, match=r"px\.csv.*'high'.*row 2: 'n/a'"):
        bars(FilesSource(str(tmp_path)))


def test_non_integral_volume_is_rejected(tmp_path: Path) -> None:
    write(tmp_path / "vol.csv", HEADER + "2024-01-02,1,1,1,1,100\n2024-01-03,1,1,1,1,100.5\n")
    with pytest.raises(SourceDataError, match=r"vol\.csv.*non-integral.*row 2: '100.5'"):
        bars(FilesSource(str(tmp_path)))


def test_empty_folder_and_missing_path(tmp_path: Path) -> None:
    with pytest.raises(SourceDataError, match="no \\*.csv"):
        bars(FilesSource(str(tmp_path)))
    with pytest.raises(SourceDataError, match="no such file"):
        bars(FilesSource(str(tmp_path / "nope")))


# --- passed through: parseable but wrong (the quality gate flags it) ---------------------------------------

BAD = (
    HEADER + "2024-01-04,10,11,9,10,100\n"  # out of order
    "2024-01-02,10,11,9,10,100\n"
    "2024-01-03,10,11,9,10,100\n"
    "2024-01-03,10,11,9,10,100\n"  # duplicate
    "2024-01-05,-10,11,9,10,100\n"  # negative price
    "2024-01-08,10,9,11,10,100\n"  # high < low
    "2024-01-09,NaN,11,9,10,100\n"  # NaN
    "2024-01-10,10,11,,10,-5\n"  # empty price, negative volume
)


@pytest.fixture
def bad_bars(tmp_path: Path) -> pl.DataFrame:
    write(tmp_path / "bad.csv", BAD)
    return bars(FilesSource(str(tmp_path)))


def test_bad_values_pass_through(bad_bars: pl.DataFrame) -> None:
    Ohlcv.validate(bad_bars)
    dates = bad_bars["date"].to_list()
    assert dates == sorted(dates)  # out-of-order rows are sorted
    assert dates.count(D(2024, 1, 3)) == 2  # duplicates kept
    by_date = {r["date"]: r for r in bad_bars.iter_rows(named=True)}
    assert by_date[D(2024, 1, 5)]["open"] == -10.0
    assert by_date[D(2024, 1, 8)]["high"] == 9.0 and by_date[D(2024, 1, 8)]["low"] == 11.0
    assert math.isnan(by_date[D(2024, 1, 9)]["open"])
    assert by_date[D(2024, 1, 10)]["low"] is None
    assert by_date[D(2024, 1, 10)]["volume"] == -5


def test_quality_gate_reports_the_passed_through_rows(bad_bars: pl.DataFrame) -> None:
    sessions = sorted(set(bad_bars["date"].to_list()))
    issues = quality_issues(bad_bars, sessions, {"BAD": D(2024, 1, 2)})
    found = {(r, d) for r, d in issues.select("rule", "bar_date").iter_rows()}
    assert ("duplicates", D(2024, 1, 3)) in found
    assert ("non_positive_price", D(2024, 1, 5)) in found
    assert ("non_positive_price", D(2024, 1, 9)) in found
    assert ("non_positive_price", D(2024, 1, 10)) in found
    assert ("ohlc_consistency", D(2024, 1, 8)) in found
    assert ("non_positive_volume", D(2024, 1, 10)) in found
    assert not issues.filter(pl.col("rule") == "missing_session").height
    assert issues.filter(pl.col("bar_date") == D(2024, 1, 2)).height == 0  # the clean row is not flagged
