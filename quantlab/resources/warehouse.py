"""The DuckDB warehouse: schema-checked, atomic, idempotent per-partition writes.

`replace()` validates a frame against its table's pandera schema, then in ONE transaction deletes the
partition range it owns (optionally scoped, e.g. to one world) and inserts the new rows. A re-run never
duplicates; a failure (schema violation, crash) leaves the previous state intact.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pandera.polars as pa
import polars as pl
from dagster_duckdb import DuckDBResource
from pydantic import Field

from quantlab.schemas import TABLES

DEFAULT_WAREHOUSE = ".quantlab/warehouse.duckdb"

_DUCK_TYPES = {
    pl.String: "VARCHAR",
    pl.Date: "DATE",
    pl.Float64: "DOUBLE",
    pl.Int64: "BIGINT",
    pl.Int32: "INTEGER",
    pl.Boolean: "BOOLEAN",
    pl.Datetime: "TIMESTAMP",
}


def default_warehouse_path() -> str:
    """`QUANTLAB_WAREHOUSE` if set, else `.quantlab/warehouse.duckdb` under the working directory."""
    return os.environ.get("QUANTLAB_WAREHOUSE", DEFAULT_WAREHOUSE)


class SchemaViolation(ValueError):
    """A frame broke its table's schema; `failure_cases` lists the failing rows and checks."""

    def __init__(self, table: str, failure_cases: pl.DataFrame, message: str):
        super().__init__(f"table '{table}' schema violation: {message}")
        self.table = table
        self.failure_cases = failure_cases


def empty_frame(table: str, columns: Sequence[str] | None = None) -> pl.DataFrame:
    """A typed frame with no rows in the layout of `table`."""
    cols = TABLES[table].schema.columns
    return pl.DataFrame(schema={c: cols[c].dtype.type for c in (columns or cols)})


def validate(table: str, df: pl.DataFrame) -> pl.DataFrame:
    """Validate `df` against the table schema (all errors collected), return it in schema column order.

    A frame with no rows and no columns (a stage that produced nothing) stands for an empty table slice.
    """
    if df.width == 0:
        df = empty_frame(table)
    schema = TABLES[table].schema
    try:
        schema.validate(df, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        summary = cases.group_by("column", "check").agg(pl.len().alias("n")).sort("column", "check")
        what = "; ".join(
            f"{r['column'] or '(frame)'}: {r['check']} ({r['n']}x)" for r in summary.iter_rows(named=True)
        )
        raise SchemaViolation(table, cases, what) from None
    return df.select(list(schema.columns))


def _layout(table: str) -> list[tuple[str, str, bool]]:
    """(column, DuckDB type, nullable) of a table as its schema defines it."""
    out = []
    for name, col in TABLES[table].schema.columns.items():
        dtype = col.dtype.type
        out.append((name, _DUCK_TYPES.get(dtype) or _DUCK_TYPES[type(dtype)], bool(col.nullable)))
    return out


def _ddl(table: str) -> str:
    cols = [f'"{name}" {duck}{"" if nullable else " NOT NULL"}' for name, duck, nullable in _layout(table)]
    return f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(cols)})"


class WarehouseLayoutError(RuntimeError):
    """A stored table was created by another version of its schema."""


class Warehouse(DuckDBResource):
    """DuckDB warehouse resource (a `dagster_duckdb.DuckDBResource` with quantlab's table contracts)."""

    database: str = Field(default_factory=default_warehouse_path, description="Path of the DuckDB file.")

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short-lived read-write connection (the parent directory is created on first use)."""
        Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        with self.get_connection() as con:
            yield con

    def has_table(self, table: str) -> bool:
        with self.connect() as con:
            rows = con.sql(
                "SELECT 1 FROM information_schema.tables WHERE table_name = ?", params=[table]
            ).fetchall()
        return bool(rows)

    def read(self, sql: str, params: Sequence | None = None) -> pl.DataFrame:
        """Run a query and return a polars frame."""
        with self.connect() as con:
            return con.sql(sql, params=list(params) if params else None).pl()

    def read_table(
        self,
        table: str,
        start: dt.date | None = None,
        end: dt.date | None = None,
        where: Mapping[str, object] | None = None,
        columns: Sequence[str] | None = None,
    ) -> pl.DataFrame:
        """Rows of `table` whose partition column is in [start, end]; an empty, typed frame if it is absent."""
        spec = TABLES[table]
        cols = list(columns) if columns else list(spec.schema.columns)
        if not self.has_table(table):
            return empty_frame(table, cols)
        clauses, params = [], []
        if spec.partition_col is None:
            start = end = None
        if start is not None:
            clauses.append(f"{spec.partition_col} >= ?")
            params.append(start)
        if end is not None:
            clauses.append(f"{spec.partition_col} <= ?")
            params.append(end)
        for key, value in (where or {}).items():
            if isinstance(value, (list, tuple)):
                clauses.append(f'"{key}" IN (SELECT UNNEST(?))')
                params.append(list(value))
            else:
                clauses.append(f'"{key}" = ?')
                params.append(value)
        select = ", ".join(f'"{c}"' for c in cols)
        sql = f"SELECT {select} FROM {table}"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        return self.read(sql, params)

    def replace(
        self,
        table: str,
        df: pl.DataFrame,
        start: dt.date,
        end: dt.date,
        scope: Mapping[str, str] | None = None,
    ) -> int:
        """Atomically replace the rows of `table` with partition date in [start, end] (within `scope`).

        Raises SchemaViolation (nothing written) if `df` breaks the schema, and ValueError if a row lies
        outside the range or scope it is written for. Returns the number of rows inserted.
        """
        spec = TABLES[table]
        if spec.partition_col is None:
            raise ValueError(f"table '{table}' is not partitioned: use replace_all")
        scope = dict(scope or {})
        if set(scope) != set(spec.scope):
            raise ValueError(f"table '{table}' writes are scoped by {spec.scope}, got {tuple(scope)}")
        df = validate(table, df)
        part = df.get_column(spec.partition_col)
        if df.height and (part.min() < start or part.max() > end):
            raise ValueError(f"rows for '{table}' fall outside the partition range {start}..{end}")
        for key, value in scope.items():
            if df.height and (df.get_column(key) != value).any():
                raise ValueError(f"rows for '{table}' fall outside the scope {key}={value}")
        where = " AND ".join([f"{spec.partition_col} BETWEEN ? AND ?", *[f'"{k}" = ?' for k in scope]])
        return self._swap(table, df, where, [start, end, *scope.values()])

    def replace_all(self, table: str, df: pl.DataFrame, scope: Mapping[str, str] | None = None) -> int:
        """Atomically replace every row of a non-partitioned table, or of its `scope` (e.g. one study of
        `tuning_trials`) when the table's writes are scoped (schema-checked like `replace`)."""
        spec = TABLES[table]
        if spec.partition_col is not None:
            raise ValueError(f"table '{table}' is partitioned by {spec.partition_col}: use replace")
        scope = dict(scope or {})
        if set(scope) != set(spec.scope):
            raise ValueError(f"table '{table}' writes are scoped by {spec.scope}, got {tuple(scope)}")
        df = validate(table, df)
        for key, value in scope.items():
            if df.height and (df.get_column(key) != value).any():
                raise ValueError(f"rows for '{table}' fall outside the scope {key}={value}")
        where = " AND ".join(f'"{k}" = ?' for k in scope) or "TRUE"
        return self._swap(table, df, where, list(scope.values()))

    def append(self, table: str, df: pl.DataFrame) -> int:
        """Insert rows into an append-only, non-partitioned table (e.g. `overrides`), schema-checked first."""
        if TABLES[table].partition_col is not None:
            raise ValueError(f"table '{table}' is partitioned by {TABLES[table].partition_col}: use replace")
        return self._swap(table, validate(table, df), "FALSE", [])

    def _swap(self, table: str, df: pl.DataFrame, where: str, params: list) -> int:
        """In one transaction: delete the rows matching `where`, insert `df` (layout checked first)."""
        with self.connect() as con:
            con.execute(_ddl(table))
            stored = con.sql(
                "SELECT column_name, data_type, is_nullable = 'YES' FROM information_schema.columns "
                "WHERE table_name = ? ORDER BY ordinal_position",
                params=[table],
            ).fetchall()
            if [tuple(r) for r in stored] != _layout(table):
                raise WarehouseLayoutError(
                    f"table '{table}' in {self.database} has the layout {stored}, but this version of quantlab "
                    f"writes {_layout(table)}: drop the table (or the warehouse file) and re-materialize"
                )
            con.execute("BEGIN TRANSACTION")
            try:
                con.execute(f"DELETE FROM {table} WHERE {where}", params or None)
                if df.height:
                    con.register("_incoming", df)
                    con.execute(f"INSERT INTO {table} SELECT * FROM _incoming")
                    con.unregister("_incoming")
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return df.height
