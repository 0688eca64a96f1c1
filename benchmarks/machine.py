"""What the benchmark scripts record about the machine they ran on (the figures depend on it)."""

from __future__ import annotations

import os


def loadavg() -> list[float] | None:
    """The 1/5/15-minute load averages (other processes share the cores), or None where unavailable."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None
