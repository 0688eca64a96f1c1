"""Tests for quantlab.codes: codes of grouped and ungrouped string columns, runs, index ranges."""

from __future__ import annotations

import numpy as np
import polars as pl

from quantlab.codes import ranges, run_codes, run_starts


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


def test_ranges_concatenates_index_ranges_and_skips_empty_ones() -> None:
    lo, hi = np.array([3, 7, 7, 0, 10]), np.array([5, 7, 9, 2, 11])
    expected = np.concatenate([np.arange(a, b) for a, b in zip(lo, hi, strict=True)])
    assert ranges(lo, hi).tolist() == expected.tolist() == [3, 4, 7, 8, 0, 1, 10]
    assert ranges(np.array([4]), np.array([4])).tolist() == []
    assert ranges(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)).tolist() == []


def test_run_starts_of_one_or_more_columns() -> None:
    a, b = np.array([1, 1, 2, 2, 2, 1]), np.array([5, 6, 6, 6, 7, 7])
    assert run_starts(a).tolist() == [0, 2, 5]
    assert run_starts(a, b).tolist() == [0, 1, 2, 4, 5]
    assert run_starts(np.zeros(0)).tolist() == []
