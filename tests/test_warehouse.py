"""Tests for the DuckDB warehouse (`quantlab.resources.warehouse.Warehouse`) on a real file in tmp_path."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import polars as pl
import pytest

import quantlab.resources.warehouse as warehouse
from quantlab.resources import SchemaViolation, Warehouse
from quantlab.schemas import TABLES

DAYS = [dt.date(2024, 1, d) for d in (2, 3, 4, 5, 8)]
ALLOC = {"world": pl.String, "date": pl.Date, "strategy": pl.String, "side": pl.String, "weight": pl.Float64}


@pytest.fixture
def wh(tmp_path: Path) -> Warehouse:
    return Warehouse(database=str(tmp_path / "nested" / "wh.duckdb"))


def alloc(
    world: str, days: list[dt.date], weight: float = 0.5, strategies: tuple[str, ...] = ("a", "b")
) -> pl.DataFrame:
    rows = [
        {"world": world, "date": d, "strategy": s, "side": "long", "weight": weight}
        for d in days
        for s in strategies
    ]
    return pl.DataFrame(rows, schema=ALLOC)


def targets(days: list[dt.date], weight: float = 0.25) -> pl.DataFrame:
    rows = [
        {"date": d, "strategy": "s", "symbol": sym, "score": 1.0, "weight": weight, "side": "long"}
        for d in days
        for sym in ("AAPL", "MSFT")
    ]
    return pl.DataFrame(
        rows,
        schema={
            "date": pl.Date,
            "strategy": pl.String,
            "symbol": pl.String,
            "score": pl.Float64,
            "weight": pl.Float64,
            "side": pl.String,
        },
    )


def read_sorted(wh: Warehouse, table: str, **kw) -> pl.DataFrame:
    df = wh.read_table(table, **kw)
    keys = [c for c in ("world", "date", "strategy", "symbol") if c in df.columns]
    return df.sort(keys)


def test_file_is_created_and_replace_is_idempotent(wh: Warehouse) -> None:
    df = targets(DAYS)
    assert wh.replace("targets", df, DAYS[0], DAYS[-1]) == 10
    assert Path(wh.database).exists()
    first = read_sorted(wh, "targets")
    assert wh.replace("targets", df, DAYS[0], DAYS[-1]) == 10
    second = read_sorted(wh, "targets")
    assert first.equals(second)
    assert second.height == 10
    assert second.equals(df.sort("date", "strategy", "symbol"))
    assert wh.read("SELECT count(*) AS n FROM targets").item() == 10


def test_replace_only_touches_its_range(wh: Warehouse) -> None:
    wh.replace("targets", targets(DAYS, weight=0.25), DAYS[0], DAYS[-1])
    # re-run the middle day with new values, and an empty partition for the day after
    wh.replace("targets", targets(DAYS[2:3], weight=0.4), DAYS[2], DAYS[2])
    wh.replace("targets", targets([]), DAYS[3], DAYS[3])
    out = read_sorted(wh, "targets")
    by_day = dict(out.group_by("date").agg(pl.col("weight").max()).iter_rows())
    assert by_day == {DAYS[0]: 0.25, DAYS[1]: 0.25, DAYS[2]: 0.4, DAYS[4]: 0.25}
    assert out.height == 8
    # a range with no rows in the frame deletes that range (a re-run that produced nothing)
    assert wh.replace("targets", targets([]), DAYS[0], DAYS[1]) == 0
    assert sorted(read_sorted(wh, "targets").get_column("date").unique()) == [DAYS[2], DAYS[4]]


def test_read_table_range_where_and_columns(wh: Warehouse) -> None:
    wh.replace("world_allocations", alloc("w1", DAYS), DAYS[0], DAYS[-1], scope={"world": "w1"})
    wh.replace("world_allocations", alloc("w2", DAYS), DAYS[0], DAYS[-1], scope={"world": "w2"})
    part = wh.read_table("world_allocations", start=DAYS[1], end=DAYS[2], where={"world": "w2"})
    assert part.height == 4
    assert set(part.get_column("world")) == {"w2"}
    assert sorted(set(part.get_column("date"))) == DAYS[1:3]
    where = {"world": ["w1", "w2"], "strategy": "a"}
    listed = wh.read_table("world_allocations", where=where, columns=["date"])
    assert listed.columns == ["date"] and listed.height == 10
    assert wh.read_table("world_allocations").schema == pl.Schema(ALLOC)


def test_scope_isolates_worlds(wh: Warehouse) -> None:
    wh.replace("world_allocations", alloc("w1", DAYS, weight=0.1), DAYS[0], DAYS[-1], scope={"world": "w1"})
    wh.replace("world_allocations", alloc("w2", DAYS, weight=0.2), DAYS[0], DAYS[-1], scope={"world": "w2"})
    # re-running w2 over the whole range with fewer strategies leaves w1 alone
    wh.replace(
        "world_allocations",
        alloc("w2", DAYS[:2], weight=0.3, strategies=("c",)),
        DAYS[0],
        DAYS[-1],
        scope={"world": "w2"},
    )
    w1 = read_sorted(wh, "world_allocations", where={"world": "w1"})
    w2 = read_sorted(wh, "world_allocations", where={"world": "w2"})
    assert w1.equals(alloc("w1", DAYS, weight=0.1).sort("world", "date", "strategy"))
    assert w2.equals(alloc("w2", DAYS[:2], weight=0.3, strategies=("c",)))


def test_schema_violation_raises_and_keeps_previous_rows(wh: Warehouse) -> None:
    good = alloc("w1", DAYS)
    wh.replace("world_allocations", good, DAYS[0], DAYS[-1], scope={"world": "w1"})
    before = read_sorted(wh, "world_allocations")
    bad = alloc("w1", DAYS[:2]).with_columns(
        weight=pl.when(pl.col("strategy") == "b").then(-0.1).otherwise(pl.col("weight"))
    )
    with pytest.raises(SchemaViolation) as excinfo:
        wh.replace("world_allocations", bad, DAYS[0], DAYS[-1], scope={"world": "w1"})
    exc = excinfo.value
    assert exc.table == "world_allocations"
    assert "world_allocations" in str(exc)
    cases = exc.failure_cases
    assert isinstance(cases, pl.DataFrame) and cases.height == 2
    assert set(cases.get_column("column")) == {"weight"}
    assert all("greater_than_or_equal_to" in c for c in cases.get_column("check"))
    assert read_sorted(wh, "world_allocations").equals(before)


@pytest.mark.parametrize(
    ("mutate", "column"),
    [
        (lambda df: df.with_columns(side=pl.lit("sideways")), "side"),
        (lambda df: df.with_columns(weight=pl.lit(None, dtype=pl.Float64)), "weight"),
        (lambda df: df.with_columns(extra=pl.lit(1)), None),
        (lambda df: df.drop("side"), None),
        (lambda df: df.with_columns(pl.col("date").cast(pl.String)), "date"),
        (lambda df: pl.concat([df, df.head(1)]), None),  # duplicate key
    ],
    ids=["bad_category", "null", "extra_column", "missing_column", "wrong_dtype", "duplicate"],
)
def test_schema_violations_of_targets(wh: Warehouse, mutate, column: str | None) -> None:
    wh.replace("targets", targets(DAYS), DAYS[0], DAYS[-1])
    before = read_sorted(wh, "targets")
    with pytest.raises(SchemaViolation) as excinfo:
        wh.replace("targets", mutate(targets(DAYS[:2], weight=0.9)), DAYS[0], DAYS[1])
    assert excinfo.value.failure_cases.height >= 1
    if column is not None:
        assert column in set(excinfo.value.failure_cases.get_column("column"))
    assert read_sorted(wh, "targets").equals(before)


def test_rows_outside_range_or_scope_are_refused(wh: Warehouse) -> None:
    wh.replace("world_allocations", alloc("w1", DAYS), DAYS[0], DAYS[-1], scope={"world": "w1"})
    before = read_sorted(wh, "world_allocations")
    with pytest.raises(ValueError, match="outside the partition range"):
        wh.replace("world_allocations", alloc("w1", DAYS), DAYS[1], DAYS[-1], scope={"world": "w1"})
    with pytest.raises(ValueError, match="outside the partition range"):
        wh.replace("world_allocations", alloc("w1", DAYS), DAYS[0], DAYS[-2], scope={"world": "w1"})
    with pytest.raises(ValueError, match="outside the scope world=w2"):
        wh.replace("world_allocations", alloc("w1", DAYS), DAYS[0], DAYS[-1], scope={"world": "w2"})
    mixed = pl.concat([alloc("w2", DAYS[:1]), alloc("w1", DAYS[:1])])
    with pytest.raises(ValueError, match="outside the scope"):
        wh.replace("world_allocations", mixed, DAYS[0], DAYS[0], scope={"world": "w2"})
    with pytest.raises(ValueError, match="scoped by"):
        wh.replace("world_allocations", alloc("w1", DAYS), DAYS[0], DAYS[-1])
    with pytest.raises(ValueError, match="scoped by"):
        wh.replace("targets", targets(DAYS), DAYS[0], DAYS[-1], scope={"world": "w1"})
    assert read_sorted(wh, "world_allocations").equals(before)


def test_labels_partition_by_asof_date(wh: Warehouse) -> None:
    labels = pl.DataFrame(
        {
            "date": [DAYS[0], DAYS[1]],
            "symbol": ["AAPL", "AAPL"],
            "label": ["fwd_ret", "fwd_ret"],
            "horizon": pl.Series([1, 1], dtype=pl.Int32),
            "asof_date": [DAYS[1], DAYS[2]],
            "value": [0.01, -0.02],
        }
    )
    assert wh.replace("labels", labels, DAYS[1], DAYS[2]) == 2
    with pytest.raises(ValueError, match="outside the partition range"):
        wh.replace("labels", labels, DAYS[0], DAYS[1])  # `date` fits, `asof_date` does not
    out = wh.read_table("labels", start=DAYS[2], end=DAYS[2])
    assert out.get_column("value").to_list() == [-0.02]
    assert out.schema["horizon"] == pl.Int32


@pytest.mark.parametrize("table", sorted(TABLES))
def test_read_missing_table_returns_empty_typed_frame(wh: Warehouse, table: str) -> None:
    assert not wh.has_table(table)
    out = wh.read_table(table, start=DAYS[0], end=DAYS[-1])
    assert out.height == 0
    assert out.columns == list(TABLES[table].schema.columns)
    for name, col in TABLES[table].schema.columns.items():
        assert out.schema[name] == col.dtype.type, name
    TABLES[table].schema.validate(out)


def test_written_table_round_trips_types(wh: Warehouse) -> None:
    # columns given in another order are stored in schema order
    df = alloc("w1", DAYS[:1]).select("weight", "side", "strategy", "date", "world")
    wh.replace("world_allocations", df, DAYS[0], DAYS[0], scope={"world": "w1"})
    assert wh.has_table("world_allocations")
    out = read_sorted(wh, "world_allocations")
    assert out.schema == pl.Schema(ALLOC)
    assert out.equals(alloc("w1", DAYS[:1]))


def test_failed_insert_rolls_back_the_delete(wh: Warehouse, monkeypatch: pytest.MonkeyPatch) -> None:
    """A database error after the DELETE (here a NOT NULL violation the schema check would have caught)."""
    wh.replace("targets", targets(DAYS), DAYS[0], DAYS[-1])
    before = read_sorted(wh, "targets")
    monkeypatch.setattr(warehouse, "validate", lambda table, df: df)
    bad = targets(DAYS[:2]).with_columns(weight=pl.lit(None, dtype=pl.Float64))
    with pytest.raises(duckdb.Error):
        wh.replace("targets", bad, DAYS[0], DAYS[1])
    assert read_sorted(wh, "targets").equals(before)
    # the connection is usable afterwards and a good write still goes through
    assert wh.replace("targets", targets(DAYS[:2], weight=0.1), DAYS[0], DAYS[1]) == 4


def test_outdated_table_layout_is_refused_before_any_write(tmp_path: Path) -> None:
    import datetime as dt

    from quantlab.resources.warehouse import WarehouseLayoutError

    wh = Warehouse(database=str(tmp_path / "old.duckdb"))
    with wh.connect() as con:
        con.execute("CREATE TABLE world_returns (world VARCHAR, date DATE, ret DOUBLE)")
        con.execute("INSERT INTO world_returns VALUES ('w', DATE '2020-01-02', 0.01)")
    day = dt.date(2020, 1, 2)
    with pytest.raises(WarehouseLayoutError, match="world_returns"):
        wh.replace("world_returns", pl.DataFrame(), day, day, scope={"world": "w"})
    assert wh.read("SELECT count(*) AS n FROM world_returns").item() == 1
