"""Markdown rendering of frames, shared by materialization metadata and run reports."""

import polars as pl


def md_table(df: pl.DataFrame, max_rows: int = 30) -> str:
    """A markdown table of the first `max_rows` rows (floats rounded)."""
    if df.is_empty():
        return "_no rows_"
    shown = df.head(max_rows).with_columns(pl.col(pl.Float64).round(4))
    head = "| " + " | ".join(shown.columns) + " |"
    sep = "|" + "---|" * len(shown.columns)
    body = ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in shown.iter_rows()]
    more = [f"\n_{df.height - max_rows} more rows_"] if df.height > max_rows else []
    return "\n".join([head, sep, *body, *more])
