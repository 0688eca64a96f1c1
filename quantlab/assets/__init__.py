"""Thin Dagster wrappers around the stage packages: one module per stage."""
