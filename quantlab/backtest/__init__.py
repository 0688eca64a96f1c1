"""Backtesting: vectorized target-weight simulation over symbol x date price matrices."""
