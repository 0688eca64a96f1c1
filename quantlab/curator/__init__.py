"""Data curator: market-data sources, the OHLCV contract and the quality rules (no Dagster imports)."""
