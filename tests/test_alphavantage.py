"""Alpha Vantage client and source, on recorded fixtures (tests/fixtures/alphavantage); never the network."""

from __future__ import annotations

import datetime as dt
import io
import logging
import urllib.error
from urllib.parse import parse_qsl, urlsplit

import polars as pl
import pytest
from av_server import FIX, INVALID, serve

from quantlab.calendar import sessions
from quantlab.curator.adjust import RAW_SCHEMA
from quantlab.curator.alphavantage import (
    AlphaVantageClient,
    AlphaVantageError,
    AlphaVantageSource,
    ApiKeyError,
    BurstLimitError,
    DailyLimitError,
    EmptyResponseError,
    InvalidSymbolError,
    NetworkError,
    PremiumEndpointError,
    RateLimitError,
    TruncatedResponseError,
    UnexpectedResponseError,
    auto_outputsize,
    classify,
    newest_bar_complete,
    redact,
)
from quantlab.curator.contract import OHLCV_SCHEMA
from quantlab.curator.files import REGISTRY_SCHEMA
from quantlab.curator.sources import Source

KEY = "QLTESTKEY7F3A9C2E"  # the key echoed by error_daily_limit.json
UTC = dt.UTC
AFTER_CLOSE = dt.datetime(2024, 5, 3, 21, 0, tzinfo=UTC)  # 17:00 New York, the day of the newest bar
BEFORE_CLOSE = dt.datetime(2024, 5, 3, 18, 0, tzinfo=UTC)  # 14:00 New York

ROUTES = {
    ("TIME_SERIES_DAILY", "IBM", "json"): "daily_IBM_compact.json",
    ("TIME_SERIES_DAILY", "IBM", "csv"): "daily_IBM.csv",
    ("TIME_SERIES_DAILY_ADJUSTED", "IBM", "json"): "daily_adjusted_IBM.json",
    ("TIME_SERIES_DAILY_ADJUSTED", "IBM", "csv"): "daily_adjusted_IBM.csv",
    ("TIME_SERIES_DAILY", "MSFT", "json"): "daily_MSFT_compact.json",
}

EXPECTED = {
    "daily_IBM_compact.json": None,
    "daily_IBM.csv": None,
    "daily_IBM_incomplete.json": None,
    "daily_IBM_reordered.json": None,
    "daily_MSFT_compact.json": None,
    "daily_adjusted_IBM.json": None,
    "daily_adjusted_IBM.csv": None,
    "error_invalid_symbol.json": InvalidSymbolError,
    "error_missing_apikey.json": ApiKeyError,
    "error_demo_key.json": ApiKeyError,
    "error_burst_information.json": BurstLimitError,
    "error_burst_note.json": BurstLimitError,
    "error_daily_limit.json": DailyLimitError,
    "error_premium_endpoint.json": PremiumEndpointError,
    "error_premium_outputsize.json": PremiumEndpointError,
    "error_unknown_information.json": UnexpectedResponseError,
    "empty_body.txt": EmptyResponseError,
    "empty_object.json": EmptyResponseError,
    "truncated.json": TruncatedResponseError,
    "truncated.csv": TruncatedResponseError,
}
ERRORS = {name: cls for name, cls in EXPECTED.items() if cls is not None}


def body(name: str) -> bytes:
    return (FIX / name).read_bytes()


class FakeTransport:
    """url -> fixture by the query's function/symbol/datatype, or a scripted sequence of answers.

    A scripted answer is a fixture name, raw bytes, or an exception to raise; the last one repeats.
    """

    def __init__(self, *script: str | bytes | BaseException) -> None:
        self.script = list(script)
        self.calls: list[dict[str, str]] = []

    def __call__(self, url: str, timeout: float) -> bytes:
        query = dict(parse_qsl(urlsplit(url).query))
        self.calls.append(query)
        if self.script:
            answer = self.script.pop(0) if len(self.script) > 1 else self.script[0]
            if isinstance(answer, BaseException):
                raise answer
            return answer if isinstance(answer, bytes) else body(answer)
        route = (query["function"], query["symbol"], query.get("datatype", "json"))
        return body(ROUTES.get(route, INVALID))


def make_client(transport=None, *, now=AFTER_CLOSE, sleeps=None, key=KEY, **kw) -> AlphaVantageClient:
    return AlphaVantageClient(
        key,
        transport=transport or FakeTransport(),
        sleep=(sleeps.append if sleeps is not None else _no_sleep),
        now=lambda: now,
        **kw,
    )


def _no_sleep(seconds: float) -> None:
    raise AssertionError(f"unexpected sleep({seconds})")


# --- field mapping ----------------------------------------------------------------------------------------


def test_daily_json_maps_fields_by_name():
    df = make_client().daily("IBM", adjusted=False, outputsize="compact", datatype="json")
    assert df.schema == pl.Schema(RAW_SCHEMA)
    assert df.height == 65
    assert df["date"].is_sorted()
    assert df["date"][0] == dt.date(2024, 2, 1)
    assert df.row(-1, named=True) == {
        "symbol": "IBM",
        "date": dt.date(2024, 5, 3),
        "open": 193.97,
        "high": 196.04,
        "low": 193.42,
        "close": 194.09,
        "volume": 6426149,
        "dividend": 0.0,
        "split": 1.0,
    }


def test_daily_csv_equals_json():
    client = make_client()
    as_json = client.daily("IBM", adjusted=False, outputsize="compact", datatype="json")
    as_csv = client.daily("IBM", adjusted=False, outputsize="compact", datatype="csv")
    assert as_csv.equals(as_json)


def test_adjusted_series_uses_raw_prices_and_6_volume():
    client = make_client()
    df = client.daily("IBM", adjusted=True, outputsize="compact", datatype="json")
    assert df.schema == pl.Schema(RAW_SCHEMA)
    rows = {r["date"]: r for r in df.iter_rows(named=True)}
    split_day = rows[dt.date(2024, 3, 18)]
    assert (split_day["close"], split_day["volume"], split_day["split"]) == (92.25, 7570298, 2.0)
    before = rows[dt.date(2024, 3, 15)]
    assert before["close"] == 188.47  # the traded close, not the vendor's "5. adjusted close" (94.235)
    assert before["volume"] == 5730782  # "6. volume", not "5. adjusted close"
    assert rows[dt.date(2024, 2, 8)]["dividend"] == 1.66
    assert df.filter(pl.col("dividend") > 0).height == 1
    assert df.filter(pl.col("split") != 1).height == 1
    assert client.daily("IBM", adjusted=True, outputsize="compact", datatype="csv").equals(df)


def test_json_with_keys_in_another_order():
    client = make_client(FakeTransport("daily_IBM_reordered.json"))
    reordered = client.daily("IBM", adjusted=False, outputsize="compact", datatype="json")
    compact = make_client().daily("IBM", adjusted=False, outputsize="compact", datatype="json")
    assert reordered.equals(compact.tail(5))


def test_csv_with_columns_in_another_order():
    text = (FIX / "daily_adjusted_IBM.csv").read_text()
    df = pl.read_csv(io.StringIO(text), infer_schema=False)
    shuffled = df.select(list(reversed(df.columns)))
    buf = io.BytesIO()
    shuffled.write_csv(buf)
    client = make_client(FakeTransport(buf.getvalue()))
    got = client.daily("IBM", adjusted=True, outputsize="compact", datatype="csv")
    assert got.equals(make_client().daily("IBM", adjusted=True, outputsize="compact", datatype="csv"))


def test_missing_field_is_an_unexpected_response():
    text = (FIX / "daily_IBM_reordered.json").read_text().replace('"5. volume"', '"5. turnover"')
    with pytest.raises(UnexpectedResponseError, match="volume"):
        make_client(FakeTransport(text.encode())).daily("IBM")


# --- incomplete newest bar --------------------------------------------------------------------------------


def test_incomplete_newest_bar_is_dropped(caplog):
    caplog.set_level(logging.INFO, logger="quantlab.curator.alphavantage")
    client = make_client(
        FakeTransport("daily_IBM_incomplete.json"), now=dt.datetime(2024, 5, 6, 23, tzinfo=UTC)
    )
    df = client.daily("IBM", adjusted=False, outputsize="compact", datatype="json")
    assert df["date"][-1] == dt.date(2024, 5, 3)  # 2024-05-06 refreshed at 11:32 ET: dropped
    assert df.height == 10
    assert any("dropped the newest bar 2024-05-06" in r.getMessage() for r in caplog.records)


def test_newest_bar_kept_when_refreshed_after_close():
    text = (
        (FIX / "daily_IBM_incomplete.json").read_text().replace("2024-05-06 11:32:05", "2024-05-06 16:00:01")
    )
    df = make_client(FakeTransport(text.encode()), now=BEFORE_CLOSE).daily("IBM")
    assert df["date"][-1] == dt.date(2024, 5, 6)


@pytest.mark.parametrize("datatype", ["json", "csv"])
def test_plain_date_or_csv_uses_the_clock(datatype):
    after = make_client(now=AFTER_CLOSE).daily("IBM", datatype=datatype)
    before = make_client(now=BEFORE_CLOSE).daily("IBM", datatype=datatype)
    assert after["date"][-1] == dt.date(2024, 5, 3)
    assert before["date"][-1] == dt.date(2024, 5, 2)
    assert before.equals(after.head(after.height - 1))


def test_newest_bar_complete_on_half_days():
    half = dt.date(2024, 11, 29)  # the day after Thanksgiving: NYSE closes at 13:00 ET (18:00 UTC)
    assert newest_bar_complete(half, "2024-11-29 13:00:00", BEFORE_CLOSE)
    assert not newest_bar_complete(half, "2024-11-29 12:59:59", BEFORE_CLOSE)
    assert newest_bar_complete(half, "2024-11-29", dt.datetime(2024, 11, 29, 18, 30, tzinfo=UTC))
    assert not newest_bar_complete(half, "2024-11-29", dt.datetime(2024, 11, 29, 17, 30, tzinfo=UTC))
    assert not newest_bar_complete(half, None, dt.datetime(2024, 11, 29, 17, 59, tzinfo=UTC))
    full = dt.date(2024, 11, 27)
    assert not newest_bar_complete(full, "2024-11-27 13:05:00", BEFORE_CLOSE)
    assert newest_bar_complete(full, "2024-11-27 16:00:00", BEFORE_CLOSE)
    # summer time: 16:00 EDT = 20:00 UTC
    assert newest_bar_complete(dt.date(2024, 5, 3), "2024-05-03", dt.datetime(2024, 5, 3, 20, 0, tzinfo=UTC))
    assert not newest_bar_complete(
        dt.date(2024, 5, 3), "2024-05-03", dt.datetime(2024, 5, 3, 19, 59, tzinfo=UTC)
    )


# --- errors -----------------------------------------------------------------------------------------------


def test_every_fixture_is_classified():
    assert {p.name for p in FIX.iterdir() if p.name != "README.md"} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_classify(name):
    err = classify(body(name), api_key=KEY)
    expected = EXPECTED[name]
    if expected is None:
        assert err is None
    else:
        assert type(err) is expected
        assert isinstance(err, AlphaVantageError)
        assert KEY not in str(err)


def test_classify_rate_limits_before_premium():
    assert issubclass(BurstLimitError, RateLimitError) and issubclass(DailyLimitError, RateLimitError)
    for name in ("error_burst_information.json", "error_burst_note.json", "error_daily_limit.json"):
        assert "premium" in body(name).decode()  # the trap the order avoids
        assert isinstance(classify(body(name)), RateLimitError)
    assert isinstance(
        classify({"Information": "Thank you ... premium plans ... 25 requests per day"}), DailyLimitError
    )
    assert classify('{"Meta Data": {}, "Time Series (Daily)": {}}') is None
    assert isinstance(classify("<html>Bad gateway</html>"), UnexpectedResponseError)
    assert isinstance(classify("[1, 2]"), UnexpectedResponseError)


@pytest.mark.parametrize("name", sorted(ERRORS))
@pytest.mark.parametrize("datatype", ["json", "csv"])
def test_every_error_class_is_raised(name, datatype):
    transport = FakeTransport(name)
    client = make_client(transport, retry_budget_s=0.0)  # no backoff affordable: raised on the first answer
    with pytest.raises(ERRORS[name]) as info:
        client.daily("IBM", adjusted=False, outputsize="compact", datatype=datatype)
    assert len(transport.calls) == 1
    assert "'IBM'" in str(info.value)
    assert KEY not in str(info.value)


@pytest.mark.parametrize(
    "name", ["error_invalid_symbol.json", "error_premium_endpoint.json", "error_premium_outputsize.json"]
)
def test_no_retry_for_permanent_errors(name):
    sleeps: list[float] = []
    transport = FakeTransport(name)
    with pytest.raises(ERRORS[name]):
        make_client(transport, sleeps=sleeps).daily("IBM")
    assert len(transport.calls) == 1
    assert sleeps == []


def test_invalid_symbol_names_the_symbol():
    with pytest.raises(InvalidSymbolError, match="NOPE"):
        make_client().daily("NOPE")


# --- retries ----------------------------------------------------------------------------------------------


def test_burst_then_success(caplog):
    caplog.set_level(logging.WARNING)
    sleeps: list[float] = []
    transport = FakeTransport(
        "error_burst_information.json", "error_burst_note.json", "daily_IBM_compact.json"
    )
    df = make_client(transport, sleeps=sleeps).daily("IBM")
    assert df.height == 65
    assert sleeps == [15.0, 30.0]
    assert len(transport.calls) == 3
    assert sum("retrying in" in r.getMessage() for r in caplog.records) == 2


@pytest.mark.parametrize(
    ("name", "cls"),
    [("error_burst_information.json", BurstLimitError), ("error_daily_limit.json", DailyLimitError)],
)
def test_budget_exhausted(name, cls):
    sleeps: list[float] = []
    transport = FakeTransport(name)
    with pytest.raises(cls) as info:
        make_client(transport, sleeps=sleeps).daily("IBM")
    assert sleeps == [15.0, 30.0, 60.0]  # 105 s; the next 120 s wait would exceed the 120 s budget
    assert len(transport.calls) == 4
    message = str(info.value)
    assert "gave up after 4 attempt(s) and 105 s of backoff" in message
    assert "retry_budget_s=120" in message
    assert (info.value.attempts, info.value.slept_s) == (4, 105.0)
    assert KEY not in message


def test_network_errors_are_retried():
    sleeps: list[float] = []
    transport = FakeTransport(
        urllib.error.URLError("Connection refused"),
        TimeoutError("timed out"),
        urllib.error.HTTPError("http://x", 503, "Service Unavailable", None, None),
        "daily_IBM_compact.json",
    )
    assert make_client(transport, sleeps=sleeps).daily("IBM").height == 65
    assert sleeps == [15.0, 30.0, 60.0]


def test_network_errors_exhaust_the_budget_without_leaking_the_url():
    sleeps: list[float] = []

    def transport(url: str, timeout: float) -> bytes:
        raise urllib.error.URLError(f"cannot reach {url}")

    with pytest.raises(NetworkError) as info:
        make_client(transport, sleeps=sleeps, retry_budget_s=50.0).daily("IBM")
    assert sleeps == [15.0, 30.0]
    assert "3 attempt(s)" in str(info.value)
    assert_no_key(info.value)


def test_http_client_error_not_retried():
    transport = FakeTransport(urllib.error.HTTPError("http://x", 404, "Not Found", None, None))
    with pytest.raises(UnexpectedResponseError, match="HTTP 404"):
        make_client(transport, sleeps=[]).daily("IBM")
    assert len(transport.calls) == 1


# --- the key ----------------------------------------------------------------------------------------------


def assert_no_key(exc: BaseException) -> None:
    seen = 0
    while exc is not None and seen < 10:
        assert KEY not in str(exc)
        assert KEY not in repr(exc)
        assert all(KEY not in str(a) for a in exc.args)
        exc = exc.__cause__ or exc.__context__
        seen += 1


def test_key_never_leaks(caplog):
    caplog.set_level(logging.DEBUG)
    sleeps: list[float] = []
    client = make_client(FakeTransport("error_daily_limit.json"), sleeps=sleeps)
    assert KEY in body("error_daily_limit.json").decode()
    with pytest.raises(DailyLimitError) as info:
        client.daily("IBM")
    assert "API key as ***" in str(info.value)
    assert_no_key(info.value)
    assert caplog.records  # the retries were logged ...
    for record in caplog.records:  # ... without the key
        assert KEY not in record.getMessage()
    assert KEY not in repr(client)
    assert KEY not in repr(AlphaVantageSource(client, ("IBM",)))


def test_empty_key_fails_before_any_request():
    for key in ("", "   "):
        transport = FakeTransport()
        with pytest.raises(ApiKeyError, match="no request was made"):
            make_client(transport, key=key).daily("IBM")
        assert transport.calls == []


def test_redact():
    key = "ab+c/d=="
    assert redact(f"key {key} here", key) == "key *** here"
    assert redact("https://x/query?symbol=IBM&apikey=ab%2Bc%2Fd%3D%3D&x=1", key) == (
        "https://x/query?symbol=IBM&apikey=***&x=1"
    )
    assert redact("https://x/query?apikey=SOMETHINGELSE", None) == "https://x/query?apikey=***"
    assert (
        redact("We have detected your API key as ZZZ123 and our", None)
        == "We have detected your API key as *** and our"
    )
    assert redact("nothing to hide", "") == "nothing to hide"


# --- the source -------------------------------------------------------------------------------------------


def test_auto_outputsize():
    today = dt.date(2024, 5, 3)
    recent = sessions(dt.date(2023, 6, 1), today)
    assert auto_outputsize(dt.date(2024, 4, 1), today) == "compact"
    assert auto_outputsize(recent[-95], today) == "compact"
    assert auto_outputsize(recent[-96], today) == "full"
    assert auto_outputsize(dt.date(2023, 1, 3), today) == "full"


@pytest.mark.parametrize(
    ("start", "expected"), [(dt.date(2024, 4, 22), "compact"), (dt.date(2020, 1, 2), "full")]
)
def test_source_picks_outputsize(start, expected):
    transport = FakeTransport()
    source = AlphaVantageSource(make_client(transport), ("IBM",))
    source.bars(start, dt.date(2024, 5, 3))
    assert [c["outputsize"] for c in transport.calls] == [expected]
    fixed = FakeTransport()
    AlphaVantageSource(make_client(fixed), ("IBM",), outputsize="full").bars(
        dt.date(2024, 4, 22), dt.date(2024, 5, 3)
    )
    assert fixed.calls[0]["outputsize"] == "full"


def test_source_bars_in_the_contract():
    source: Source = AlphaVantageSource(make_client(), ("MSFT", "IBM"))
    bars = source.bars(dt.date(2024, 4, 25), dt.date(2024, 5, 2))
    assert bars.schema == pl.Schema(OHLCV_SCHEMA)
    assert bars["symbol"].unique().sort().to_list() == ["IBM", "MSFT"]
    assert bars.height == 12  # 6 sessions each
    assert bars.equals(bars.sort("symbol", "date"))
    assert bars["date"].min() == dt.date(2024, 4, 25) and bars["date"].max() == dt.date(2024, 5, 2)
    assert (bars["adj_factor"] == 1.0).all()  # the unadjusted endpoint: no actions
    assert bars["close"].equals(bars["close_raw"], check_names=False)


@pytest.mark.parametrize("datatype", ["json", "csv"])
def test_adjusted_source_gives_total_returns(datatype):
    source = AlphaVantageSource(
        make_client(), ("IBM",), adjusted=True, outputsize="compact", datatype=datatype
    )
    bars = source.bars(dt.date(2024, 1, 1), dt.date(2024, 5, 3))
    raw = make_client().daily("IBM", adjusted=True, datatype=datatype)
    assert bars.schema == pl.Schema(OHLCV_SCHEMA)
    assert bars.height == raw.height == 46
    total = raw["split"] * (raw["close"] + raw["dividend"]) / raw["close"].shift(1)
    adjusted = bars["close"] / bars["close"].shift(1)
    assert (adjusted - total).abs().drop_nulls().max() < 1e-12
    rows = {r["date"]: r for r in bars.iter_rows(named=True)}
    jump = rows[dt.date(2024, 3, 18)]["close"] / rows[dt.date(2024, 3, 15)]["close"]
    assert 0.95 < jump < 1.05  # the 2:1 split is not a -50 % day
    assert bars["adj_factor"][0] == 1.0
    assert (bars["close"] / bars["close_raw"] - bars["adj_factor"]).abs().max() < 1e-12


def test_unadjusted_source_shows_the_split_as_a_raw_jump():
    # the adjusted fixture's raw prices served by the unadjusted endpoint's layout: no actions, factor 1
    raw = pl.read_csv(FIX / "daily_adjusted_IBM.csv", infer_schema=False).select(
        "timestamp", "open", "high", "low", "close", "volume"
    )
    buf = io.BytesIO()
    raw.write_csv(buf)
    source = AlphaVantageSource(
        make_client(FakeTransport(buf.getvalue())), ("IBM",), outputsize="compact", datatype="csv"
    )
    bars = source.bars(dt.date(2024, 3, 15), dt.date(2024, 3, 18)).sort("date")
    assert bars["close"][1] / bars["close"][0] < 0.55
    assert (bars["adj_factor"] == 1.0).all()


def test_source_invalid_symbol_raises():
    source = AlphaVantageSource(make_client(), ("IBM", "NOPE"))
    with pytest.raises(InvalidSymbolError, match="'NOPE'"):
        source.bars(dt.date(2024, 4, 22), dt.date(2024, 5, 3))


def test_source_registry_and_validation():
    source = AlphaVantageSource(make_client(), ("MSFT", "IBM", "MSFT"))
    assert source.symbols == ("MSFT", "IBM")
    reg = source.registry()
    assert reg.schema == pl.Schema(REGISTRY_SCHEMA)
    assert reg.rows() == [("IBM", "IBM", "unknown"), ("MSFT", "MSFT", "unknown")]
    with pytest.raises(ValueError, match="outputsize"):
        AlphaVantageSource(make_client(), ("IBM",), outputsize="huge")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        AlphaVantageSource(make_client(), ("IBM", " "))


# --- the real urllib path ---------------------------------------------------------------------------------


def test_through_a_local_http_server(monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    with serve(ROUTES) as (url, seen):
        client = AlphaVantageClient(
            KEY,
            base_url=url,
            timeout_s=5.0,
            sleep=_no_sleep,
            now=lambda: AFTER_CLOSE,
        )
        assert client.transport is None  # the default urllib GET
        as_json = client.daily("IBM", adjusted=False, outputsize="compact", datatype="json")
        as_csv = client.daily("IBM", adjusted=False, outputsize="compact", datatype="csv")
        assert as_json.height == 65 and as_csv.equals(as_json)
        with pytest.raises(InvalidSymbolError) as info:
            client.daily("NOPE", adjusted=False, outputsize="compact", datatype="csv")
        assert_no_key(info.value)
    assert [q["apikey"] for q in seen] == [KEY] * 3
    assert [(q["function"], q["symbol"], q["datatype"]) for q in seen] == [
        ("TIME_SERIES_DAILY", "IBM", "json"),
        ("TIME_SERIES_DAILY", "IBM", "csv"),
        ("TIME_SERIES_DAILY", "NOPE", "csv"),
    ]


def test_empty_series_gives_no_bars():
    empty = b'{"Meta Data": {"3. Last Refreshed": "2024-05-03"}, "Time Series (Daily)": {}}'
    df = make_client(FakeTransport(empty)).daily("IBM")
    assert df.height == 0 and df.schema == pl.Schema(RAW_SCHEMA)
    source = AlphaVantageSource(make_client(FakeTransport(empty)), ("IBM",))
    assert source.bars(dt.date(2024, 4, 1), dt.date(2024, 5, 3)).schema == pl.Schema(OHLCV_SCHEMA)
