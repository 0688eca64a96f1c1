"""Feature library and labels: no look-ahead, window locality, warm-up, hand-checked values, as-of labels."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from quantlab.features import library
from quantlab.features.labels import (
    LABEL_NAMES,
    LABELS,
    LONG_SCHEMA,
    MAX_HORIZON,
    check_no_label_leakage,
    compute_labels,
)
from quantlab.features.library import (
    FEATURE_NAMES,
    FEATURES,
    MAX_LOOKBACK,
    compute_features,
    feature_set_version,
    prepare_panel,
)
from quantlab.features.windows import window_mean, window_std, window_var

SQRT252 = math.sqrt(252.0)


def weekdays(n: int, start: dt.date = dt.date(2021, 1, 4)) -> list[dt.date]:
    out, d = [], start
    while len(out) < n:
        if d.weekday() < 5:
            out.append(d)
        d += dt.timedelta(days=1)
    return out


def make_ohlcv(
    seed: int, n_symbols: int = 3, n_days: int = 150, starts: tuple[int, ...] = (), flat: bool = False
) -> pl.DataFrame:
    """Random-walk OHLCV with valid bars, shuffled rows; symbol i starts at day starts[i] (late listing).

    With ``flat``, one stretch of each symbol has constant prices and zero volume (division-by-zero paths).
    """
    rng = np.random.default_rng(seed)
    dates = weekdays(n_days)
    frames = []
    for i in range(n_symbols):
        start = starts[i] if i < len(starts) else 0
        n = n_days - start
        r = rng.normal(0.0005, 0.02, n)
        if flat and n > 40:
            a = int(rng.integers(1, n - 30))
            r[a : a + int(rng.integers(15, 30))] = 0.0
        close = rng.uniform(5, 500) * np.exp(np.cumsum(r))
        prev = np.concatenate([[close[0]], close[:-1]])
        opn = np.where(r == 0.0, close, prev * np.exp(rng.normal(0, 0.01, n)))
        wig = np.where(r == 0.0, 0.0, np.abs(rng.normal(0, 0.01, (2, n))))
        high, low = np.maximum(opn, close) * np.exp(wig[0]), np.minimum(opn, close) * np.exp(-wig[1])
        volume = np.where(r == 0.0, 0, rng.integers(1_000, 1_000_000, n))
        adj = np.full(n, rng.choice([1.0, 0.5, 0.25]))
        frames.append(
            pl.DataFrame(
                {
                    "symbol": f"S{i}",
                    "date": dates[start:],
                    "open": opn,
                    "high": high,
                    "low": low,
                    "close": close,
                    "close_raw": close / adj,
                    "adj_factor": adj,
                    "volume": volume.astype(np.int64),
                }
            )
        )
    return pl.concat(frames).sample(fraction=1.0, shuffle=True, seed=seed)


@st.composite
def frames(draw: st.DrawFn) -> pl.DataFrame:
    """1-4 symbols, some listed late, over a little more than the longest lookback (so that every feature of
    the library has values, late-listed symbols included for most)."""
    n_symbols = draw(st.integers(1, 4))
    starts = tuple(draw(st.sampled_from([0, 0, 5, 40, 90])) for _ in range(n_symbols))
    return make_ohlcv(
        seed=draw(st.integers(0, 2**31)),
        n_symbols=n_symbols,
        n_days=draw(st.integers(MAX_LOOKBACK + 10, MAX_LOOKBACK + 100)),
        starts=starts,
        flat=draw(st.booleans()),
    )


def perturb_after(df: pl.DataFrame, t: dt.date, seed: int, scale: float) -> pl.DataFrame:
    """Rescale every bar (all symbols) strictly after t by a random factor, redraw its volume."""
    rng = np.random.default_rng(seed)
    after = (df.get_column("date") > t).to_numpy()
    k = pl.Series(np.where(after, np.exp(rng.normal(0, scale, df.height)), 1.0))
    vol = pl.Series(np.where(after, rng.integers(0, 10**9, df.height), df.get_column("volume").to_numpy()))
    return df.with_columns(*[pl.col(c) * k for c in ("open", "high", "low", "close")], volume=vol)


# ----------------------------------------------------------------------------------------- no look-ahead
def assert_no_lookahead(df: pl.DataFrame, t: dt.date, seed: int, scale: float) -> pl.DataFrame:
    """Every feature at or before t is bit-identical whatever the data after t (changed or absent), and so
    is every label already known at t. Returns the features at or before t (to check coverage)."""
    changed = perturb_after(df, t, seed, scale)
    full, pert = compute_features(df), compute_features(changed)
    upto = pl.col("date") <= t
    # every feature at or before t is bit-identical (nulls included) whatever happens after t
    assert_frame_equal(full.filter(upto), pert.filter(upto), check_exact=True)
    # ... and also when the data after t does not exist at all (a run on day t)
    assert_frame_equal(full.filter(upto), compute_features(df.filter(upto)), check_exact=True)
    assert not full.filter(~upto).equals(pert.filter(~upto))  # the perturbation is real

    # labels: a label whose asof_date <= t is already known at t and must not move either
    known = pl.col("asof_date") <= t
    assert_frame_equal(
        compute_labels(df).filter(known), compute_labels(changed).filter(known), check_exact=True
    )
    return full.filter(upto)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(df=frames(), data=st.data())
def test_no_lookahead_features_and_asof_labels(df: pl.DataFrame, data: st.DataObject) -> None:
    dates = sorted(df.get_column("date").unique())
    # t anywhere, or late enough that even the longest lookback has values at or before it
    late = st.integers(min(MAX_LOOKBACK, len(dates) - 2), len(dates) - 2)
    t = dates[data.draw(st.integers(0, len(dates) - 2) | late, label="t index")]
    scale = data.draw(st.sampled_from([0.3, 20.0]), label="perturbation scale")  # 20: factors up to ~1e26
    assert_no_lookahead(df, t, data.draw(st.integers(0, 2**31), label="seed"), scale)


@pytest.mark.parametrize("seed", [0, 1])
def test_no_lookahead_covers_every_feature(seed: int) -> None:
    """The property above, on data where every feature of the library has values before t: none is vacuous."""
    df = make_ohlcv(seed=seed, n_symbols=4, n_days=MAX_LOOKBACK + 40, starts=(0, 0, 3, 8), flat=True)
    dates = sorted(df.get_column("date").unique())
    for t in (dates[MAX_LOOKBACK + 5], dates[-2]):
        before = assert_no_lookahead(df, t, seed=seed + 10, scale=0.3)
        empty = [n for n in FEATURE_NAMES if before.get_column(n).drop_nulls().len() == 0]
        assert not empty, f"no value at or before {t}: {empty}"


# ------------------------------------------------------------------------------------- window locality
def _row_in_symbol(df: pl.DataFrame) -> pl.DataFrame:
    return df.sort("date").with_columns(_k=pl.int_range(pl.len()).over("symbol"))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(df=frames(), k=st.integers(1, 60))
def test_window_locality(df: pl.DataFrame, k: int) -> None:
    """Computing on days >= k gives the same value wherever the lookback window lies inside [k, ...]."""
    sub_in = df.filter(pl.col("date") >= weekdays(k + 1)[k])  # the k-th session of the calendar
    full = compute_features(df)
    sub = _row_in_symbol(compute_features(sub_in)).join(
        full, on=["date", "symbol"], how="left", suffix="_full"
    )
    assert sub.height == sub_in.height
    for name, d in FEATURES.items():
        inside = sub.filter(pl.col("_k") >= d.lookback - 1)
        a, b = inside.get_column(name).to_numpy(), inside.get_column(f"{name}_full").to_numpy()
        assert np.array_equal(np.isnan(a), np.isnan(b)), name  # to_numpy maps null to NaN
        assert np.allclose(a, b, rtol=1e-9, atol=1e-12, equal_nan=True), name
        warm = sub.filter(pl.col("_k") < d.lookback - 1).get_column(name)
        assert warm.null_count() == warm.len(), name


# ------------------------------------------------------------------------------------------- warm-up
def test_warmup_first_value_is_lookback_th_row_with_late_listing() -> None:
    df = make_ohlcv(seed=7, n_symbols=4, n_days=MAX_LOOKBACK + 70, starts=(0, 0, 13, 57))
    out = _row_in_symbol(compute_features(df))
    assert out.height == df.height
    for name, d in FEATURES.items():
        first = out.filter(pl.col(name).is_not_null()).group_by("symbol").agg(pl.col("_k").min())
        assert sorted(first.get_column("symbol")) == ["S0", "S1", "S2", "S3"], name
        assert first.get_column("_k").to_list() == [d.lookback - 1] * 4, name
        # random data has no degenerate window: non-null from then on
        assert out.filter(pl.col("_k") >= d.lookback - 1).get_column(name).null_count() == 0, name
    # the late-listed symbol's own time-series features do not depend on the other symbols
    ts = [n for n, d in FEATURES.items() if d.kind == "time_series"]
    alone = compute_features(df.filter(pl.col("symbol") == "S3"), ts)
    assert_frame_equal(alone, out.filter(pl.col("symbol") == "S3").select("date", "symbol", *ts))


def test_registry() -> None:
    assert tuple(FEATURES) == FEATURE_NAMES
    assert len(FEATURES) >= 22
    assert MAX_LOOKBACK == max(d.lookback for d in FEATURES.values()) == 253
    expected = {
        "ret_1": 2,
        "ret_5": 6,
        "mom_20": 21,
        "mom_60": 61,
        "mom_120": 121,
        "vol_20": 21,
        "vol_60": 61,
        "rsi_14": 15,
        "atr_14": 15,
        "ma_gap_20": 20,
        "ma_gap_50": 50,
        "zscore_20": 20,
        "volume_ratio_20": 21,
        "gap_1": 2,
        "range_1": 1,
        "xs_rank_mom_20": 21,
        "xs_z_mom_20": 21,
        "beta_60": 61,
        "mom_252": 253,
        "mom_12_1": 253,
        "ma_gap_200": 200,
        "vol_ratio_20_60": 61,
        "xs_rank_mom_60": 61,
        "xs_z_vol_20": 21,
    }
    assert {n: FEATURES[n].lookback for n in expected} == expected
    assert FEATURE_NAMES[:18] == tuple(expected)[:18]  # the original order is kept (table layout)
    assert all(d.name == n and d.description for n, d in FEATURES.items())
    xs = {"xs_rank_mom_20", "xs_z_mom_20", "beta_60", "xs_rank_mom_60", "xs_z_vol_20"}
    assert {n for n, d in FEATURES.items() if d.kind == "cross_sectional"} == xs
    # a feature computed from other features needs at least their lookbacks
    for impl in library._IMPLS:
        assert all(impl.defn.lookback >= FEATURES[d].lookback for d in impl.needs), impl.defn.name


# --------------------------------------------------------------------------------------- hand-checked
def _frame(
    closes: dict[str, list[float]],
    opens: dict[str, list[float]] | None = None,
    volumes: dict[str, list[int]] | None = None,
) -> pl.DataFrame:
    rows = []
    for s, c in closes.items():
        c = np.asarray(c, dtype=float)
        o = np.asarray(opens[s], dtype=float) if opens else c
        rows.append(
            pl.DataFrame(
                {
                    "symbol": s,
                    "date": weekdays(len(c)),
                    "open": o,
                    "high": np.maximum(o, c) * 1.01,
                    "low": np.minimum(o, c) * 0.98,
                    "close": c,
                    "close_raw": c,
                    "adj_factor": 1.0,
                    "volume": volumes[s] if volumes else [1000] * len(c),
                }
            )
        )
    return pl.concat(rows)


def test_hand_checked_values() -> None:
    rng = np.random.default_rng(3)
    r = rng.normal(0, 0.02, 60)
    c = 100 * np.cumprod(1 + r)
    o = c * (1 + rng.normal(0, 0.01, 60))
    v = rng.integers(100, 10_000, 60)
    out = compute_features(_frame({"A": list(c)}, {"A": list(o)}, {"A": list(v)})).to_dict(as_series=False)
    h, lo = np.maximum(o, c) * 1.01, np.minimum(o, c) * 0.98
    ret = c[1:] / c[:-1] - 1
    assert out["ret_1"][0] is None and out["ret_1"][1] == pytest.approx(c[1] / c[0] - 1, rel=1e-12)
    assert out["ret_5"][5] == pytest.approx(c[5] / c[0] - 1, rel=1e-12)
    assert out["mom_20"][19] is None and out["mom_20"][20] == pytest.approx(c[20] / c[0] - 1, rel=1e-12)
    assert out["vol_20"][20] == pytest.approx(np.std(ret[:20], ddof=1) * SQRT252, rel=1e-9)
    assert out["vol_20"][45] == pytest.approx(np.std(ret[25:45], ddof=1) * SQRT252, rel=1e-9)
    assert out["gap_1"][0] is None and out["gap_1"][7] == pytest.approx(o[7] / c[6] - 1, rel=1e-12)
    assert out["range_1"][0] == pytest.approx((h[0] - lo[0]) / c[0], rel=1e-12)
    tr = np.maximum(h[1:], c[:-1]) - np.minimum(lo[1:], c[:-1])
    assert out["atr_14"][14] == pytest.approx(tr[:14].mean() / c[14], rel=1e-9)
    assert out["ma_gap_20"][19] == pytest.approx(c[19] / c[:20].mean() - 1, rel=1e-9)
    assert out["ma_gap_50"][55] == pytest.approx(c[55] / c[6:56].mean() - 1, rel=1e-9)
    assert out["zscore_20"][30] == pytest.approx((c[30] - c[11:31].mean()) / c[11:31].std(ddof=1), rel=1e-9)
    assert out["volume_ratio_20"][20] == pytest.approx(v[20] / v[:20].mean(), rel=1e-12)
    w = ret[16:30]  # the 14 returns ending at row 30
    gain, loss = np.clip(w, 0, None).mean(), np.clip(-w, 0, None).mean()
    assert out["rsi_14"][30] == pytest.approx(100 * gain / (gain + loss), rel=1e-9)


def test_rsi_extremes_and_flat_nulls() -> None:
    up, down, flat = [100 + i for i in range(30)], [100 - i for i in range(30)], [50.0] * 30
    out = compute_features(_frame({"U": up, "D": down, "F": flat}))
    rsi = {s: out.filter(pl.col("symbol") == s).get_column("rsi_14") for s in "UDF"}
    assert rsi["U"].slice(14).to_list() == [100.0] * 16 and rsi["U"].slice(0, 14).null_count() == 14
    assert rsi["D"].slice(14).to_list() == [0.0] * 16
    f = out.filter(pl.col("symbol") == "F")
    for name in ("rsi_14", "zscore_20"):  # 0/0 on a flat window -> null, never NaN
        assert f.get_column(name).null_count() == 30, name
    assert f.get_column("vol_20").drop_nulls().to_list() == [0.0] * 10
    assert out.select(pl.all().exclude("date", "symbol").is_nan().any()).row(0) == (False,) * len(FEATURES)


def test_flat_stretch_after_moves_gives_null_not_residue_garbage() -> None:
    """Incremental rolling sums leave ~1e-18 residues after a flat stretch; ratios over them must be null."""
    rng = np.random.default_rng(0)
    closes = {}
    for i in range(100):
        moves = 100 * np.cumprod(1 + rng.normal(0, 0.02, int(rng.integers(2, 60))))
        closes[f"S{i:03d}"] = [*moves, *[moves[-1]] * 30]
    out = _row_in_symbol(compute_features(_frame(closes), ["rsi_14", "zscore_20", "vol_20"]))
    n_moves = pl.len().over("symbol") - 30
    tail = out.filter(pl.col("_k") >= n_moves - 1 + 20)  # the last 20 closes and returns are all flat
    assert tail.height == 100 * 11
    assert tail.get_column("rsi_14").null_count() == tail.height
    assert tail.get_column("zscore_20").null_count() == tail.height
    assert tail.get_column("vol_20").to_list() == [0.0] * tail.height


def test_cross_sectional_and_beta_hand_checked() -> None:
    rng = np.random.default_rng(11)
    ra = rng.normal(0, 0.01, 80)
    closes = {
        "A": list(100 * np.cumprod(1 + ra)),
        "B": list(50 * np.cumprod(1 + 2 * ra)),  # returns exactly twice A's
        "C": list(20 * np.cumprod(1 + rng.normal(0, 0.02, 80))),
    }
    out = compute_features(_frame(closes))
    day = out.filter(pl.col("date") == weekdays(80)[70]).sort("symbol")
    mom = day.get_column("mom_20").to_numpy()
    order = np.argsort(np.argsort(mom))
    assert day.get_column("xs_rank_mom_20").to_list() == pytest.approx(order / 2.0)
    assert day.get_column("xs_z_mom_20").to_numpy() == pytest.approx((mom - mom.mean()) / mom.std(ddof=1))
    rets = {s: np.asarray(c)[1:] / np.asarray(c)[:-1] - 1 for s, c in closes.items()}
    u = (rets["A"] + rets["B"] + rets["C"]) / 3
    win = slice(70 - 60, 70)  # the 60 returns ending at row 70
    for s, b in zip("ABC", day.get_column("beta_60"), strict=True):
        cov = np.cov(rets[s][win], u[win], ddof=1)
        assert b == pytest.approx(cov[0, 1] / cov[1, 1], rel=1e-8), s


def test_long_horizon_and_derived_features_hand_checked() -> None:
    rng = np.random.default_rng(21)
    n = 300
    closes = {s: 100 * np.cumprod(1 + rng.normal(0.0003, 0.02 * (i + 1), n)) for i, s in enumerate("ABCD")}
    out = compute_features(_frame({s: list(c) for s, c in closes.items()}))
    dates = weekdays(n)

    def at(i: int) -> pl.DataFrame:
        return out.filter(pl.col("date") == dates[i]).sort("symbol")

    c = closes["A"]
    a = out.filter(pl.col("symbol") == "A")
    assert a.get_column("mom_252")[251] is None and a.get_column("mom_12_1")[251] is None
    assert a.get_column("mom_252")[252] == pytest.approx(c[252] / c[0] - 1, rel=1e-12)
    assert a.get_column("mom_252")[290] == pytest.approx(c[290] / c[38] - 1, rel=1e-12)
    assert a.get_column("mom_12_1")[252] == pytest.approx(c[231] / c[0] - 1, rel=1e-12)
    assert a.get_column("mom_12_1")[290] == pytest.approx(c[269] / c[38] - 1, rel=1e-12)
    assert a.get_column("ma_gap_200")[198] is None
    assert a.get_column("ma_gap_200")[199] == pytest.approx(c[199] / c[:200].mean() - 1, rel=1e-9)
    assert a.get_column("ma_gap_200")[250] == pytest.approx(c[250] / c[51:251].mean() - 1, rel=1e-9)
    r = c[1:] / c[:-1] - 1  # r[i - 1] is the return at row i
    assert a.get_column("vol_ratio_20_60")[59] is None
    want = np.std(r[80:100], ddof=1) / np.std(r[40:100], ddof=1)  # windows ending at row 100
    assert a.get_column("vol_ratio_20_60")[100] == pytest.approx(want, rel=1e-9)

    day = at(280)
    mom60 = day.get_column("mom_60").to_numpy()
    assert day.get_column("xs_rank_mom_60").to_list() == pytest.approx(np.argsort(np.argsort(mom60)) / 3.0)
    vol = day.get_column("vol_20").to_numpy()
    assert day.get_column("xs_z_vol_20").to_numpy() == pytest.approx((vol - vol.mean()) / vol.std(ddof=1))
    assert (
        at(59).get_column("xs_rank_mom_60").null_count() == 4
        and at(60).get_column("xs_rank_mom_60").null_count() == 0
    )


def test_vol_ratio_null_on_flat_window() -> None:
    flat = [50.0] * 70
    out = compute_features(_frame({"F": flat}), ["vol_20", "vol_ratio_20_60"])
    assert out.get_column("vol_20").drop_nulls().to_list() == [0.0] * 50
    assert out.get_column("vol_ratio_20_60").null_count() == 70  # 0 / 0: null, never NaN


@pytest.mark.parametrize("w", [2, 14, 20, 60])
def test_window_mean_and_var_against_the_definition(w: int) -> None:
    """Every trailing window equals numpy's mean / var(ddof=1) of its rows; NaN exactly where the window
    holds a NaN or has fewer than w rows; a flat window has its value as mean and exactly 0 as variance; the
    rows after a value never change it (bit for bit)."""
    rng = np.random.default_rng(w)
    n, k = 7 * w + 3, 5
    x = 100 + np.cumsum(rng.normal(0, 1, (n, k)), axis=0)
    x[3 * w : 4 * w + 5, 1] = 42.5  # a flat stretch longer than a window
    x[rng.integers(0, n, 4), rng.integers(0, k, 4)] = np.nan
    mean, var = window_mean(x, w), window_var(x, w)
    assert np.array_equal(window_std(x, w), np.sqrt(var), equal_nan=True)
    views = np.lib.stride_tricks.sliding_window_view(x, w, axis=0)  # (n - w + 1, k, w)
    with np.errstate(invalid="ignore"):
        want_mean, want_var = views.mean(axis=2), views.var(axis=2, ddof=1)
    assert np.isnan(mean[: w - 1]).all() and np.isnan(var[: w - 1]).all()
    assert np.array_equal(np.isnan(mean[w - 1 :]), np.isnan(want_mean))
    assert np.array_equal(np.isnan(var[w - 1 :]), np.isnan(want_var))
    assert np.allclose(mean[w - 1 :], want_mean, rtol=1e-12, atol=0, equal_nan=True)
    assert np.allclose(var[w - 1 :], want_var, rtol=1e-9, atol=1e-12, equal_nan=True)
    flat = np.arange(4 * w - 1, 4 * w + 5)  # windows inside the flat stretch
    assert (mean[flat, 1] == 42.5).all() and (var[flat, 1] == 0.0).all()
    for t in (w - 1, 2 * w, 3 * w + 1, n - 2):  # truncate or perturb after t: nothing at or before t moves
        changed = x.copy()
        changed[t + 1 :] *= rng.uniform(0.5, 1e6, changed[t + 1 :].shape)
        for f in (window_mean, window_var):
            assert np.array_equal(f(changed, w)[: t + 1], f(x, w)[: t + 1], equal_nan=True)
            assert np.array_equal(f(x[: t + 1], w), f(x, w)[: t + 1], equal_nan=True)
    assert np.isnan(window_mean(x[: w - 1], w)).all() and window_var(x[:0], w).shape == (0, k)


def test_undeclared_reads_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A feature reads only the helpers it declares and the features it needs (so that a computation can
    free a matrix once nothing left declares it)."""
    df = make_ohlcv(seed=2, n_symbols=2, n_days=40)
    ret_5 = library._IMPL["ret_5"]
    monkeypatch.setitem(library._IMPL, "ret_5", dataclasses.replace(ret_5, compute=lambda c: c["_r"]))
    with pytest.raises(KeyError, match="helper _r is read but not declared"):
        compute_features(df, ["ret_5"])
    sneaky = dataclasses.replace(ret_5, compute=lambda c: c.feature("mom_20"))
    monkeypatch.setitem(library._IMPL, "ret_5", sneaky)
    with pytest.raises(KeyError, match="feature mom_20 is read but not in `needs`"):
        compute_features(df, ["ret_5"])


def test_full_panel_fast_path_equals_the_general_path() -> None:
    """A full panel in (date, symbol) order is laid out without reordering; the result is exactly the one
    of the same bars in any other order (the general path), and the layouts agree cell for cell."""
    df = make_ohlcv(seed=21, n_symbols=4, n_days=MAX_LOOKBACK + 30, flat=True)
    ordered = df.sort("date", "symbol")
    fast, general = prepare_panel(ordered), prepare_panel(df)
    assert fast.cells is None and general.cells is not None
    assert fast.shape == general.shape == (MAX_LOOKBACK + 30, 4)
    for c in fast.values:
        assert np.array_equal(fast.values[c], general.values[c], equal_nan=True), c
    out = compute_features(ordered)
    assert_frame_equal(out, compute_features(df), check_exact=True)
    assert_frame_equal(out, compute_features(df.sort("symbol", "date")), check_exact=True)
    assert_frame_equal(compute_labels(ordered), compute_labels(df), check_exact=True)
    # not full (a symbol misses a date): the general path, with that symbol's rows closing the gap
    gap_day = sorted(ordered.get_column("date").unique())[7]
    holed = ordered.filter((pl.col("symbol") != "S2") | (pl.col("date") != gap_day))
    panel = prepare_panel(holed)
    n = MAX_LOOKBACK + 30
    assert panel.cells is not None and panel.length.tolist() == [n, n, n - 1, n]
    s2 = compute_features(holed).filter(pl.col("symbol") == "S2")
    alone = compute_features(holed.filter(pl.col("symbol") == "S2"), ["ret_5", "vol_20"])
    assert_frame_equal(s2.select(alone.columns), alone, check_exact=True)


def test_shared_panel() -> None:
    """One prepared panel serves features and labels, with the same results as the frame itself."""
    df = make_ohlcv(seed=17, n_symbols=3, n_days=80, starts=(0, 11, 0))
    panel = prepare_panel(df)
    assert_frame_equal(compute_features(panel), compute_features(df), check_exact=True)
    assert_frame_equal(
        compute_features(panel, ["rsi_14"]), compute_features(df, ["rsi_14"]), check_exact=True
    )
    assert_frame_equal(compute_labels(panel), compute_labels(df), check_exact=True)
    assert_frame_equal(
        compute_labels(panel, ["fwd_dir_5"]), compute_labels(df, ["fwd_dir_5"]), check_exact=True
    )
    closes = prepare_panel(df, ("close",))
    assert_frame_equal(compute_labels(closes), compute_labels(df), check_exact=True)
    with pytest.raises(ValueError, match="panel lacks"):
        compute_features(closes)
    empty = prepare_panel(df.clear())
    assert compute_features(empty).height == 0 and compute_labels(empty).schema == pl.Schema(LONG_SCHEMA)


def test_two_symbols_rank_ends_and_single_symbol_nulls() -> None:
    df = make_ohlcv(seed=5, n_symbols=2, n_days=40)
    ranks = compute_features(df).get_column("xs_rank_mom_20").drop_nulls()
    assert set(ranks.to_list()) == {0.0, 1.0} and ranks.len() == 2 * 20
    single = compute_features(df.filter(pl.col("symbol") == "S0"))
    assert single.get_column("xs_rank_mom_20").null_count() == single.height  # no cross-section
    assert single.get_column("xs_z_mom_20").null_count() == single.height


def test_scale_invariance() -> None:
    """Re-adjusting a symbol's whole history by a constant (a later split) leaves every feature unchanged."""
    df = make_ohlcv(seed=9, n_symbols=3, n_days=MAX_LOOKBACK + 20)
    s0 = pl.col("symbol") == "S0"
    scaled = df.with_columns(
        *[pl.when(s0).then(pl.col(c) * 0.137).otherwise(pl.col(c)) for c in ("open", "high", "low", "close")]
    )
    assert_frame_equal(
        compute_features(df), compute_features(scaled), check_exact=False, rel_tol=1e-9, abs_tol=1e-12
    )


def test_output_contract_and_validation() -> None:
    df = make_ohlcv(seed=1, n_symbols=3, n_days=60, starts=(0, 10, 0))
    out = compute_features(df)
    assert out.columns == ["date", "symbol", *FEATURE_NAMES]
    assert out.schema["date"] == pl.Date and out.schema["symbol"] == pl.String
    assert all(out.schema[n] == pl.Float64 for n in FEATURE_NAMES)
    assert out.height == df.height
    assert out.select("date", "symbol").equals(df.select("date", "symbol").sort("date", "symbol"))
    assert_frame_equal(out, compute_features(df.sort("symbol", "date")))
    assert_frame_equal(out, compute_features(df.sort("date", "symbol")))
    sub = compute_features(df, ["mom_20", "ret_1", "mom_20", "xs_z_mom_20"])
    assert sub.columns == ["date", "symbol", "mom_20", "ret_1", "xs_z_mom_20"]
    assert_frame_equal(sub, out.select(sub.columns))
    assert compute_features(df, ["xs_rank_mom_20"]).columns == ["date", "symbol", "xs_rank_mom_20"]
    assert compute_features(df.clear()).columns == out.columns
    with pytest.raises(ValueError, match="unknown"):
        compute_features(df, ["fwd_ret_5"])
    with pytest.raises(ValueError, match="duplicate"):
        compute_features(pl.concat([df, df.head(1)]))
    with pytest.raises(ValueError, match="lacks"):
        compute_features(df.drop("open"))


# ---------------------------------------------------------------------------------------------- labels
def test_labels_hand_checked_and_asof() -> None:
    n = 25
    c = {
        "A": [10.0, 11, 12, 9, 10, 13, 14, 12, 15, 16] + [16.0 + (i % 3) for i in range(n - 10)],
        "B": [20.0, 19, 21, 22, 20, 18, 24, 25, 23, 22] + [22.0 - (i % 4) for i in range(n - 10)],
    }
    df = _frame(c)
    dates = weekdays(n)
    lab = compute_labels(df)
    assert lab.schema == pl.Schema(LONG_SCHEMA)
    assert lab.equals(lab.sort("date", "symbol", maintain_order=True))

    def get(name: str, sym: str, i: int) -> tuple[float, dt.date]:
        row = lab.filter((pl.col("label") == name) & (pl.col("symbol") == sym) & (pl.col("date") == dates[i]))
        assert row.height == 1 and row.get_column("horizon")[0] == LABELS[name].horizon
        return row.get_column("value")[0], row.get_column("asof_date")[0]

    a, b = np.asarray(c["A"]), np.asarray(c["B"])
    assert get("fwd_ret_1", "A", 2) == (pytest.approx(a[3] / a[2] - 1), dates[3])
    assert get("fwd_ret_5", "B", 1) == (pytest.approx(b[6] / b[1] - 1), dates[6])
    assert get("fwd_dir_5", "A", 2) == (0.0, dates[7])  # 12 -> 12: not > 0
    assert get("fwd_dir_5", "A", 3) == (1.0, dates[8])
    assert get("fwd_dir_5", "B", 0) == (0.0, dates[5])
    mean5 = (a[9] / a[4] - 1 + b[9] / b[4] - 1) / 2
    assert get("fwd_excess_5", "A", 4) == (pytest.approx(a[9] / a[4] - 1 - mean5), dates[9])
    assert get("fwd_ret_20", "B", 3) == (pytest.approx(b[23] / b[3] - 1), dates[23])
    for name, d in LABELS.items():  # no row for the last h dates, rows for every earlier date
        got = lab.filter(pl.col("label") == name)
        assert got.height == 2 * (n - d.horizon)
        assert got.get_column("date").max() == dates[n - 1 - d.horizon]
        # asof_date is the symbol's session h rows later
        idx = {x: i for i, x in enumerate(dates)}
        assert all(idx[s] - idx[t] == d.horizon for t, s in got.select("date", "asof_date").iter_rows())


def test_fwd_dir_threshold_is_strict() -> None:
    lab = compute_labels(_frame({"A": [10.0, 11, 12, 9, 10, 10, 14, 12]}), ["fwd_dir_5"])
    assert lab.get_column("value").to_list() == [0.0, 1.0, 0.0]  # 10 -> 10 and 12 -> 12 are not up


def test_labels_are_forward_features_are_not() -> None:
    df = make_ohlcv(seed=4, n_symbols=3, n_days=80)
    t = weekdays(80)[50]
    changed = perturb_after(df, t, seed=1, scale=0.3)
    at_t = pl.col("date") == t
    assert compute_features(df).filter(at_t).equals(compute_features(changed).filter(at_t))
    for name in LABEL_NAMES:  # every label at t looks past t
        one = [compute_labels(x, [name]).filter(at_t).get_column("value") for x in (df, changed)]
        assert not one[0].equals(one[1]), name


def test_late_listed_and_delisted_labels() -> None:
    df = make_ohlcv(seed=2, n_symbols=2, n_days=40, starts=(0, 30))
    lab = compute_labels(df, ["fwd_ret_5", "fwd_excess_5"])
    late = lab.filter(pl.col("symbol") == "S1")
    assert late.get_column("date").min() == weekdays(40)[30] and late.height == 2 * (10 - 5)
    assert lab.get_column("value").null_count() == 0 and lab.get_column("value").is_nan().sum() == 0
    assert compute_labels(df, []).schema == pl.Schema(LONG_SCHEMA)
    assert compute_labels(df.clear()).schema == pl.Schema(LONG_SCHEMA)
    with pytest.raises(ValueError, match="unknown"):
        compute_labels(df, ["ret_1"])
    assert MAX_HORIZON == 20


def test_check_no_label_leakage() -> None:
    check_no_label_leakage(FEATURE_NAMES)
    assert not set(LABEL_NAMES) & set(FEATURE_NAMES)
    for bad in (["ret_1", "fwd_ret_5"], ["fwd_something_new"], LABEL_NAMES):
        with pytest.raises(ValueError, match="fwd_"):
            check_no_label_leakage(bad)


# ----------------------------------------------------------------------------------------------- version
def test_feature_set_version() -> None:
    v = feature_set_version()
    assert v == feature_set_version(FEATURE_NAMES) == feature_set_version(list(reversed(FEATURE_NAMES)))
    assert len(v) == 12 and int(v, 16) >= 0
    assert feature_set_version(["ret_1", "mom_20"]) == feature_set_version(["mom_20", "ret_1", "ret_1"])
    assert feature_set_version(["ret_1", "mom_20"]) == "46a61f793b4f"  # stable across processes and runs
    assert len({v, feature_set_version(["ret_1"]), feature_set_version(["ret_1", "mom_20"])}) == 3
    with pytest.raises(ValueError, match="unknown"):
        feature_set_version(["nope"])
