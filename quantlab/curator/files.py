"""A source that reads daily bars from the user's own CSV / Parquet files (pure polars, no Dagster).

`FilesSource(path)` reads either a folder of files, one per symbol (the symbol is the file stem,
upper-cased, unless the file has a symbol column), or one long file holding every symbol (a symbol column
is then required). A folder may mix `*.csv` and `*.parquet`; sub-folders and other files are ignored.

Columns: `columns` maps our names (symbol, date, open, high, low, close, adj_close, volume) to the file's
column names; unmapped names are looked up as themselves. date/open/high/low/close/volume are required;
adj_close is optional. Dates are ISO (`%Y-%m-%d`) unless `date_format` (a strptime format) is given;
Parquet date / datetime columns are used as they are.

Adjustment (as `quantlab.curator.embedded`): with adj_close, factor = adj_close / close is applied to
open/high/low, `close` is adj_close and `close_raw` the file's close; without it the factor is 1.0 and
close_raw = close. The output follows `quantlab.schemas.Ohlcv` exactly (column order and dtypes), sorted
by symbol and date (a stable sort: duplicate rows keep their file order), restricted to [start, end].

The split with the quality gate (`quantlab.curator.quality`): **the source rejects what it cannot parse;
the gate flags what is parseable but wrong.** `SourceDataError` (a ValueError whose message names the
file and the columns / rows) is raised for:
- missing required columns (listed, with the columns found);
- an unparseable or empty date (up to 5 offending values with their row numbers);
- a non-numeric price or volume (same);
- a non-integral volume (e.g. 100.5): it is rejected, never rounded, since it means the column is not
  what we think it is (NaN / empty volume is read as a missing volume);
- an empty symbol in a symbol column, a folder with no data file, a path that does not exist.
Row numbers are 1-based data rows (the CSV header is not counted: data row 1 is line 2 of the file).

Everything parseable is passed through unchanged so the quality checks list the rows: duplicate
(symbol, date) bars, out-of-order rows (only sorted), zero / negative prices, high < low, NaN or empty
prices (read as NaN / null), negative or missing volumes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from quantlab.curator.contract import OHLCV_SCHEMA

FIELDS = ("symbol", "date", "open", "high", "low", "close", "adj_close", "volume")
REQUIRED = ("date", "open", "high", "low", "close", "volume")
PRICES = ("open", "high", "low", "close", "adj_close")
SUFFIXES = (".csv", ".parquet")
MAX_SHOWN = 5
REGISTRY_SCHEMA = {"symbol": pl.String, "name": pl.String, "sector": pl.String}
_ROW = "__row"


class SourceDataError(ValueError):
    """A data file the source cannot parse (the message names the file, the columns and the rows)."""


def _read(file: Path) -> pl.DataFrame:
    """The file's rows, CSV columns all as strings (parsed by us, so errors can name the rows)."""
    try:
        if file.suffix.lower() == ".parquet":
            df = pl.read_parquet(file)
        else:
            df = pl.read_csv(file, infer_schema=False)
    except Exception as exc:  # any reader failure is reported against the file
        raise SourceDataError(f"{file}: cannot be read: {exc}") from exc
    return df.with_row_index(_ROW, offset=1)


def _offenders(df: pl.DataFrame, bad: pl.Expr, column: str) -> str:
    rows = df.filter(bad).select(_ROW, pl.col(column).cast(pl.String))
    shown = ", ".join(f"row {r}: {v!r}" for r, v in rows.head(MAX_SHOWN).iter_rows())
    more = f" (and {rows.height - MAX_SHOWN} more)" if rows.height > MAX_SHOWN else ""
    return f"{rows.height} row(s): {shown}{more}"


def _parse_date(df: pl.DataFrame, col: str, fmt: str | None, file: Path) -> pl.Series:
    src = df[col]
    if src.dtype == pl.Date:
        parsed = src
    elif isinstance(src.dtype, pl.Datetime):
        parsed = src.dt.date()
    elif src.dtype == pl.String:
        parsed = src.str.strip_chars().str.to_date(fmt or "%Y-%m-%d", strict=False)
    else:
        raise SourceDataError(f"{file}: date column '{col}' has type {src.dtype}, expected dates or text")
    bad = parsed.is_null()
    if bad.any():
        expected = f"format {fmt!r}" if fmt else "ISO dates (YYYY-MM-DD)"
        raise SourceDataError(
            f"{file}: unparseable dates in column '{col}' ({expected}): {_offenders(df, bad, col)}"
        )
    return parsed


def _parse_number(df: pl.DataFrame, col: str, file: Path) -> pl.Series:
    src = df[col]
    if src.dtype == pl.String:
        text = src.str.strip_chars()
        parsed = text.cast(pl.Float64, strict=False)
        bad = parsed.is_null() & text.is_not_null() & (text != "")
    elif src.dtype.is_numeric() or src.dtype == pl.Null:
        return src.cast(pl.Float64)
    else:
        raise SourceDataError(f"{file}: column '{col}' has type {src.dtype}, expected numbers")
    if bad.any():
        raise SourceDataError(f"{file}: non-numeric values in column '{col}': {_offenders(df, bad, col)}")
    return parsed


def _parse_volume(df: pl.DataFrame, col: str, file: Path) -> pl.Series:
    src = df[col]
    if src.dtype.is_integer():
        return src.cast(pl.Int64)
    values = _parse_number(df, col, file)
    values = pl.Series(col, values).fill_nan(None)  # NaN volume = missing (the gate warns)
    bad = values.is_not_null() & (values.is_infinite() | (values != values.round()))
    if bad.any():
        raise SourceDataError(
            f"{file}: non-integral volumes in column '{col}' (rejected, not rounded): "
            f"{_offenders(df, bad, col)}"
        )
    return values.cast(pl.Int64)


def _empty() -> pl.DataFrame:
    return pl.DataFrame(schema=OHLCV_SCHEMA)


@dataclass(frozen=True)
class FilesSource:
    """Bars from a folder of per-symbol CSV/Parquet files or one long file (see the module docstring)."""

    path: str
    columns: Mapping[str, str] = field(default_factory=dict)
    date_format: str | None = None
    name: str = "files"

    def __post_init__(self) -> None:
        unknown = sorted(set(self.columns) - set(FIELDS))
        if unknown:
            raise ValueError(f"unknown column names {unknown}: valid names are {', '.join(FIELDS)}")

    def _col(self, ours: str) -> str:
        return self.columns.get(ours, ours)

    def files(self) -> list[Path]:
        """The data files behind the source (one long file, or the folder's CSV/Parquet files by name)."""
        root = Path(self.path)
        if root.is_file():
            return [root]
        if not root.is_dir():
            raise SourceDataError(f"{root}: no such file or folder")
        found = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
        if not found:
            raise SourceDataError(f"{root}: no *.csv or *.parquet file in this folder")
        return found

    def _load_file(self, file: Path, *, long: bool) -> pl.DataFrame:
        df = _read(file)
        required = ("symbol", *REQUIRED) if long else REQUIRED
        missing = [c for c in required if self._col(c) not in df.columns]
        if missing:
            named = ", ".join(c if self._col(c) == c else f"{c} (as '{self._col(c)}')" for c in missing)
            found = [c for c in df.columns if c != _ROW]
            raise SourceDataError(f"{file}: missing required column(s) {named}; columns found: {found}")

        sym_col = self._col("symbol")
        if sym_col in df.columns:
            symbol = df[sym_col].cast(pl.String).str.strip_chars()
            bad = symbol.is_null() | (symbol == "")
            if bad.any():
                raise SourceDataError(
                    f"{file}: empty symbols in column '{sym_col}': {_offenders(df, bad, sym_col)}"
                )
        else:
            symbol = pl.Series([file.stem.upper()] * df.height, dtype=pl.String)

        date = _parse_date(df, self._col("date"), self.date_format, file)
        prices = {c: _parse_number(df, self._col(c), file) for c in PRICES if self._col(c) in df.columns}
        volume = _parse_volume(df, self._col("volume"), file)
        raw = pl.DataFrame(
            {"symbol": symbol, "date": date, **prices, "volume": volume},
            schema_overrides={"symbol": pl.String, "date": pl.Date},
        )
        if "adj_close" in prices:
            factor = pl.col("adj_close") / pl.col("close")
            close = pl.col("adj_close")
        else:
            factor = pl.lit(1.0, dtype=pl.Float64)
            close = pl.col("close")
        return raw.select(
            pl.col("symbol"),
            pl.col("date"),
            (pl.col("open") * factor).alias("open"),
            (pl.col("high") * factor).alias("high"),
            (pl.col("low") * factor).alias("low"),
            close.alias("close"),
            pl.col("close").alias("close_raw"),
            factor.alias("adj_factor"),
            pl.col("volume"),
        ).cast(OHLCV_SCHEMA)

    def _load(self) -> pl.DataFrame:
        long = Path(self.path).is_file()
        frames = [self._load_file(f, long=long) for f in self.files()]
        return pl.concat([_empty(), *frames]).sort("symbol", "date", maintain_order=True)

    def bars(self, start: dt.date, end: dt.date) -> pl.DataFrame:
        """Bars dated in [start, end] in the `Ohlcv` contract, sorted by symbol and date."""
        return self._load().filter(pl.col("date").is_between(start, end))

    def registry(self) -> pl.DataFrame:
        """symbol, name (= symbol), sector ("unknown") of every symbol in the files."""
        symbols = self._load().get_column("symbol").unique().sort()
        return pl.DataFrame(
            {"symbol": symbols, "name": symbols, "sector": ["unknown"] * len(symbols)}, schema=REGISTRY_SCHEMA
        )
