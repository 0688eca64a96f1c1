"""Worlds: governed portfolios of strategies — policy, daily decisions, allocation (no Dagster imports)."""
