"""Dagster resources: the DuckDB warehouse and the market-data source."""

from quantlab.resources.market_data import MarketData
from quantlab.resources.project_files import ProjectFiles
from quantlab.resources.warehouse import SchemaViolation, Warehouse

__all__ = ["MarketData", "ProjectFiles", "SchemaViolation", "Warehouse"]
