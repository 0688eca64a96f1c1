"""Feature and label library: point-in-time features (`library`) and forward training labels (`labels`).

Features use only trailing per-symbol windows (plus same-date cross-sections), so a value at date t depends
only on data at or before t and only on its declared lookback window; labels look forward a declared horizon
and are keyed by the date they become known (`asof_date`).
"""
