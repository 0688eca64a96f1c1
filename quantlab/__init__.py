"""quantlab: a quant research production chain orchestrated by Dagster."""

__version__ = "0.1.0"
