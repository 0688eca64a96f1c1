"""Tests for quantlab.codes.run_codes: codes of grouped and ungrouped string columns."""

from __future__ import annotations

import polars as pl

from quantlab.codes import run_codes


def test_grouped_column_codes_and_default_keys() -> None:
    values = pl.Series(["b"] * 5 + ["a"] * 4 + ["c"] * 3 + ["b"] * 2)
    codes, keys = run_codes(values)
    assert keys == ["a", "b", "c"]
    assert codes.tolist() == [1] * 5 + [0] * 4 + [2] * 3 + [1] * 2


def test_ungrouped_column_and_absent_values() -> None:
    values = pl.Series(["x", "a", "x", "b", "z"])
    codes, keys = run_codes(values, ["a", "b", "x"])
    assert keys == ["a", "b", "x"]
    assert codes.tolist() == [2, 0, 2, 1, -1]
    empty, none = run_codes(pl.Series([], dtype=pl.String))
    assert empty.tolist() == [] and none == []
