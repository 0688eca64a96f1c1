"""Strategy lab: strategy YAML models and target-weight construction (no Dagster imports)."""
