"""Portfolio supervisor: risk rules turning targets into approvals (no Dagster imports)."""
