"""Alpha Vantage daily bars: a thin client of our own (stdlib urllib) and a `Source` built on it.

`AlphaVantageClient.daily(symbol, adjusted=..., outputsize=..., datatype=...)` calls TIME_SERIES_DAILY or
TIME_SERIES_DAILY_ADJUSTED and returns raw bars (`RAW_SCHEMA`: symbol, date, open/high/low/close as traded,
volume, dividend, split) sorted by date. Bar fields are mapped by name, never by position: the name after
the "N. " prefix in JSON ("1. open", ..., "5. volume" in TIME_SERIES_DAILY but "6. volume" in the adjusted
series) and the CSV header (`adjusted_close`, `dividend_amount`, ...), so a reordering does not break us.
The vendor's own "adjusted close" (backward adjusted) is ignored: `quantlab.curator.adjust` adjusts forward.

The newest bar is dropped (logged at INFO) unless it is complete: "3. Last Refreshed" (US/Eastern) carries a
time at or after that session's NYSE close (13:00 on half days), or is a plain date and the clock is past that
close. CSV has no metadata: the clock alone decides.

Errors come with HTTP 200 and are told apart by the body (`classify`): every one is an `AlphaVantageError`
(see the subclasses). Burst and daily rate limits and network errors are retried with a doubling backoff
while the total sleep stays within `retry_budget_s`; nothing else is retried. The API key never appears in
logs, exception messages or reprs (`redact`).

`AlphaVantageSource` implements the `Source` protocol on top of the client. With the unadjusted endpoint (the
free one) split = 1 and dividend = 0, so the factor stays 1: a split shows as a raw price jump, which the
quality gate (`quantlab.curator.quality`) flags. Use `adjusted=True` (a premium endpoint) for adjusted bars.
"""

from __future__ import annotations

import datetime as dt
import http.client
import io
import json
import logging
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal
from zoneinfo import ZoneInfo

import polars as pl

from quantlab import calendar
from quantlab.curator.adjust import RAW_SCHEMA, apply_actions
from quantlab.curator.contract import OHLCV_SCHEMA
from quantlab.curator.files import REGISTRY_SCHEMA

BASE_URL = "https://www.alphavantage.co/query"
EASTERN = ZoneInfo("America/New_York")
META_KEY = "Meta Data"
SERIES_KEY = "Time Series (Daily)"
LAST_REFRESHED = "last refreshed"
COMPACT_BARS = 100
"""Bars returned by outputsize=compact."""
COMPACT_MARGIN = 5
"""Sessions kept in hand when choosing compact (a lagging vendor, a dropped incomplete bar)."""
OUTPUTSIZES = ("compact", "full")
DATATYPES = ("json", "csv")
SNIPPET = 300

# our column <- the bar field's name once the "N. " prefix is removed, lower-cased, "_" read as " "
FIELDS = {
    "open": "open",
    "high": "high",
    "low": "low",
    "close": "close",
    "volume": "volume",
    "dividend amount": "dividend",
    "split coefficient": "split",
}
REQUIRED = ("open", "high", "low", "close", "volume")
DEFAULTS = {"dividend": 0.0, "split": 1.0}

log = logging.getLogger(__name__)


# --- errors -------------------------------------------------------------------------------------------------


class AlphaVantageError(RuntimeError):
    """Any failure to get bars from Alpha Vantage (the message never holds the API key)."""

    retryable: ClassVar[bool] = False
    attempts: int = 1
    slept_s: float = 0.0


class InvalidSymbolError(AlphaVantageError):
    """An "Error Message" saying "Invalid API call ...": Alpha Vantage's answer for an unknown symbol."""


class ApiKeyError(AlphaVantageError):
    """The API key is missing, invalid, or the demo key (raised before any request for an empty key)."""


class RateLimitError(AlphaVantageError):
    """A rate limit (retried within the budget)."""

    retryable = True


class BurstLimitError(RateLimitError):
    """Too many requests per second / minute."""


class DailyLimitError(RateLimitError):
    """The daily request quota is used up."""


class PremiumEndpointError(AlphaVantageError):
    """A premium endpoint or parameter value (e.g. the adjusted series or outputsize=full on a free key)."""


class EmptyResponseError(AlphaVantageError):
    """An empty body or `{}`."""


class TruncatedResponseError(AlphaVantageError):
    """Invalid JSON or a CSV cut mid-row."""


class UnexpectedResponseError(AlphaVantageError):
    """Anything else: an unknown "Information" text, a body without bars, unparseable values, an HTTP error."""


class NetworkError(AlphaVantageError):
    """The request failed (connection, timeout, HTTP 429/5xx); retried within the budget."""

    retryable = True


# --- pure helpers -------------------------------------------------------------------------------------------

_ECHOED_KEY = re.compile(r"(API key as\s+)\S+?(?=[\s,;]|\.(?:\s|$)|$)", re.IGNORECASE)
_URL_KEY = re.compile(r"(apikey=)[^&\s'\"]*", re.IGNORECASE)


def redact(text: object, key: str | None) -> str:
    """`text` with the API key (plain or URL-encoded) replaced by `***`.

    Also masks whatever follows "apikey=" in a URL and the key Alpha Vantage echoes in its daily-limit text
    ("We have detected your API key as XXXX and ..."), even when `key` is not known.
    """
    out = str(text)
    if key:
        for form in sorted({key, urllib.parse.quote_plus(key), urllib.parse.quote(key, safe="")}, key=len)[
            ::-1
        ]:
            out = out.replace(form, "***")
    out = _URL_KEY.sub(r"\1***", out)
    return _ECHOED_KEY.sub(r"\1***", out)


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SNIPPET else text[:SNIPPET] + "..."


_BURST = ("sparingly", "per second", "per minute", "call frequency", "burst")
_DAILY = ("per day", "daily rate limit", "daily limit")
_PREMIUM = ("premium endpoint", "premium feature")


def _classify_json(obj: Mapping[str, Any], context: str, key: str | None) -> AlphaVantageError | None:
    if not obj:
        return EmptyResponseError(f"{context}: empty JSON object {{}} (no bars, no error message)")
    texts = {k: obj[k] for k in ("Error Message", "Information", "Note") if k in obj}
    if not texts:
        if isinstance(obj.get(SERIES_KEY), Mapping):
            return None
        return UnexpectedResponseError(
            f"{context}: no {SERIES_KEY!r} in the response; keys found: {redact(sorted(obj), key)}"
        )
    body = redact(" ".join(f"{k}: {v}" for k, v in texts.items()), key)
    low = body.lower()
    if "Error Message" in texts:
        if "apikey" in low or "api key" in low:
            return ApiKeyError(f"{context}: the API key is invalid or missing ({body})")
        if "invalid api call" in low:
            return InvalidSymbolError(
                f"{context}: invalid API call, Alpha Vantage's answer for an unknown symbol ({body})"
            )
        return UnexpectedResponseError(f"{context}: unexpected error message ({body})")
    # rate-limit texts also say "premium": rate limits first, burst before daily ("25 requests per day")
    if any(p in low for p in _BURST):
        return BurstLimitError(f"{context}: burst rate limit (too many requests per second/minute) ({body})")
    if any(p in low for p in _DAILY):
        return DailyLimitError(f"{context}: daily rate limit reached ({body})")
    if any(p in low for p in _PREMIUM):
        return PremiumEndpointError(
            f"{context}: premium endpoint or parameter, not available to this key ({body})"
        )
    if "api key" in low or "apikey" in low:
        return ApiKeyError(f"{context}: the API key cannot be used ({body})")
    return UnexpectedResponseError(f"{context}: unexpected message ({body})")


def _check_csv(text: str, context: str, key: str | None) -> AlphaVantageError | None:
    lines = [line for line in text.splitlines() if line.strip()]
    header = lines[0].strip().lower()
    if "timestamp" not in {_field_name(name) for name in header.split(",")}:
        return UnexpectedResponseError(
            f"{context}: neither JSON nor a CSV of daily bars: {redact(_snippet(text), key)!r}"
        )
    width = header.count(",") + 1
    bad = [(n, line) for n, line in enumerate(lines[1:], start=2) if line.count(",") + 1 != width]
    last = lines[-1].split(",") if len(lines) > 1 else []
    if bad or any(not cell.strip() for cell in last):
        n, line = bad[-1] if bad else (len(lines), lines[-1])
        return TruncatedResponseError(
            f"{context}: CSV cut mid-row: line {n} has {line.count(',') + 1} of {width} fields: "
            f"{redact(_snippet(line), key)!r}"
        )
    return None


def _decode(
    payload: bytes | str | Mapping[str, Any], context: str, key: str | None
) -> tuple[Mapping[str, Any] | str | None, AlphaVantageError | None]:
    """(parsed JSON object or CSV text, None) for bars; (None, the error) otherwise."""
    if isinstance(payload, Mapping):
        err = _classify_json(payload, context, key)
        return (None, err) if err else (payload, None)
    text = (
        payload.decode("utf-8", errors="replace") if isinstance(payload, bytes | bytearray) else str(payload)
    )
    text = text.lstrip("\ufeff")
    stripped = text.strip()
    if not stripped:
        return None, EmptyResponseError(f"{context}: empty response body")
    if stripped[0] in "{[":
        try:
            obj = json.loads(stripped)
        except json.JSONDecodeError as exc:
            tail = redact(_snippet(stripped[-120:]), key)
            return None, TruncatedResponseError(
                f"{context}: invalid (truncated?) JSON: {exc.msg} at char {exc.pos} of {len(stripped)}; "
                f"ends with {tail!r}"
            )
        if not isinstance(obj, dict):
            return None, UnexpectedResponseError(
                f"{context}: JSON {type(obj).__name__}, expected an object: {redact(_snippet(stripped), key)!r}"
            )
        err = _classify_json(obj, context, key)
        return (None, err) if err else (obj, None)
    err = _check_csv(text, context, key)
    return (None, err) if err else (text, None)


def classify(
    payload: bytes | str | Mapping[str, Any], *, context: str = "Alpha Vantage", api_key: str | None = None
) -> AlphaVantageError | None:
    """The error a response body stands for, or None when it holds bars (JSON or CSV).

    `payload` is the raw body (bytes / str) or a parsed JSON object. Order matters: an empty body or `{}`
    (EmptyResponseError), invalid JSON (TruncatedResponseError), "Error Message" (ApiKeyError,
    InvalidSymbolError), then "Information" / "Note": burst limit, daily limit (the burst text also says
    "25 requests per day"), premium (rate-limit texts mention premium plans too), key problems, anything else
    (UnexpectedResponseError). A CSV body needs a header naming a `timestamp` column and no short row.
    Messages start with `context` and are redacted (`api_key`, and any echoed key).
    """
    return _decode(payload, context, api_key)[1]


def _field_name(name: str) -> str:
    return re.sub(r"^\s*\d+\.\s*", "", name).strip().lower().replace("_", " ")


def session_close_utc(day: dt.date) -> dt.datetime | None:
    """The XNYS close of session `day` (aware, UTC; 13:00 ET on half days), None when `day` is no session."""
    cal = calendar._xnys()
    try:
        if not cal.is_session(day):
            return None
        return cal.session_close(day).to_pydatetime()
    except ValueError:  # outside the calendar's bounds
        return None


def _parse_last_refreshed(text: str | None) -> dt.datetime | dt.date | None:
    if not text:
        return None
    text = text.strip()
    try:
        if len(text) > 10:  # "2024-05-03 16:00:01": US/Eastern wall time
            stamp = dt.datetime.fromisoformat(text)
            return stamp if stamp.tzinfo else stamp.replace(tzinfo=EASTERN)
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


def newest_bar_complete(bar_date: dt.date, last_refreshed: str | None, now: dt.datetime) -> bool:
    """Whether the bar of `bar_date` (the newest one) is final.

    True when `last_refreshed` carries a time (US/Eastern) at or after the session's NYSE close, or it is a
    plain date / absent (CSV) / unparseable and `now` is at or after that close. A `bar_date` that is not a
    session (the calendar cannot tell) counts as complete.
    """
    close = session_close_utc(bar_date)
    if close is None:
        return True
    refreshed = _parse_last_refreshed(last_refreshed)
    if isinstance(refreshed, dt.datetime):
        return refreshed >= close
    now = now if now.tzinfo else now.replace(tzinfo=dt.UTC)
    return now >= close


def auto_outputsize(start: dt.date, today: dt.date) -> Literal["compact", "full"]:
    """compact when `start` is within the latest COMPACT_BARS - COMPACT_MARGIN NYSE sessions up to `today`."""
    need = COMPACT_BARS - COMPACT_MARGIN
    recent = calendar.sessions(today - dt.timedelta(days=2 * need + 30), today)
    if len(recent) < need:
        return "full"
    return "compact" if start >= recent[-need] else "full"


def _empty_raw() -> pl.DataFrame:
    return pl.DataFrame(schema=RAW_SCHEMA)


def _frame(symbol: str, columns: dict[str, list[str]], context: str, key: str) -> pl.DataFrame:
    """RAW_SCHEMA bars from string columns (date + the FIELDS present), strictly parsed."""
    missing = [c for c in ("date", *REQUIRED) if c not in columns]
    if missing:
        found = redact(sorted(columns), key)
        raise UnexpectedResponseError(f"{context}: bars lack field(s) {missing}; fields found: {found}")
    df = pl.DataFrame({k: pl.Series(k, v, dtype=pl.String) for k, v in columns.items()})
    out: dict[str, pl.Series] = {}
    date = df["date"].str.strip_chars().str.to_date("%Y-%m-%d", strict=False)
    if date.is_null().any():
        shown = redact(df["date"].filter(date.is_null()).head(5).to_list(), key)
        raise UnexpectedResponseError(f"{context}: unparseable dates {shown}")
    out["date"] = date
    for col in ("open", "high", "low", "close", "volume", "dividend", "split"):
        if col not in df.columns:
            out[col] = pl.Series(col, [DEFAULTS[col]] * df.height, dtype=pl.Float64)
            continue
        text = df[col].str.strip_chars()
        values = text.cast(pl.Float64, strict=False)
        bad = values.is_null() | values.is_nan()
        if col == "volume":
            bad = bad | values.is_infinite() | (values != values.round())
        if bad.any():
            shown = redact(text.filter(bad).head(5).to_list(), key)
            raise UnexpectedResponseError(f"{context}: unparseable {col} values {shown}")
        out[col] = values
    return (
        pl.DataFrame(out)
        .with_columns(pl.lit(symbol, dtype=pl.String).alias("symbol"))
        .select(list(RAW_SCHEMA))
        .cast(RAW_SCHEMA)
        .sort("date", maintain_order=True)
    )


def _json_bars(
    obj: Mapping[str, Any], symbol: str, context: str, key: str
) -> tuple[pl.DataFrame, str | None]:
    """Bars of a JSON body (fields matched by name) and its "Last Refreshed" text."""
    meta = obj.get(META_KEY)
    last = None
    if isinstance(meta, Mapping):
        last = next((str(v) for k, v in meta.items() if _field_name(k) == LAST_REFRESHED), None)
    series = obj[SERIES_KEY]
    if not series:
        return _empty_raw(), last
    columns: dict[str, list[str]] = {"date": []}
    for day, bar in series.items():
        if not isinstance(bar, Mapping):
            kind = type(bar).__name__
            raise UnexpectedResponseError(f"{context}: bar {redact(day, key)!r} is a {kind}, not an object")
        columns["date"].append(str(day))
        for name, value in bar.items():
            ours = FIELDS.get(_field_name(name))
            if ours:
                columns.setdefault(ours, []).append(str(value))
    lengths = {k: len(v) for k, v in columns.items()}
    if len(set(lengths.values())) > 1:
        raise UnexpectedResponseError(f"{context}: bars with different fields (count per field: {lengths})")
    return _frame(symbol, columns, context, key), last


def _csv_bars(text: str, symbol: str, context: str, key: str) -> pl.DataFrame:
    """Bars of a CSV body (columns matched by header name)."""
    problem = None
    try:
        df = pl.read_csv(io.StringIO(text), infer_schema=False)
    except pl.exceptions.PolarsError as exc:
        problem = redact(_snippet(str(exc)), key)
    if problem is not None:  # raised outside the except block: no __context__ holding the body
        raise UnexpectedResponseError(f"{context}: unreadable CSV: {problem}")
    columns: dict[str, list[str]] = {}
    for name in df.columns:
        canon = _field_name(name)
        ours = "date" if canon == "timestamp" else FIELDS.get(canon)
        if ours:
            columns[ours] = df[name].to_list()
    return _frame(symbol, columns, context, key)


def urllib_get(url: str, timeout: float) -> bytes:
    """The default transport: a plain GET, the body as bytes (HTTP errors raise urllib's HTTPError)."""
    request = urllib.request.Request(url, headers={"User-Agent": "quantlab", "Accept": "*/*"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read()


def _network_error(exc: BaseException, context: str, key: str) -> AlphaVantageError:
    if isinstance(exc, urllib.error.HTTPError):
        text = redact(f"HTTP {exc.code} {exc.reason}", key)
        cls = NetworkError if exc.code == 429 or exc.code >= 500 else UnexpectedResponseError
        return cls(f"{context}: {text}")
    if isinstance(exc, urllib.error.URLError):
        return NetworkError(f"{context}: network error: {redact(exc.reason, key)}")
    return NetworkError(f"{context}: network error: {type(exc).__name__}: {redact(exc, key)}")


# --- client -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlphaVantageClient:
    """Daily bars from Alpha Vantage (see the module docstring). The key is never shown (`repr=False`)."""

    api_key: str = field(repr=False)
    base_url: str = BASE_URL
    timeout_s: float = 30.0
    retry_budget_s: float = 120.0
    backoff_s: float = 15.0
    sleep: Callable[[float], None] = time.sleep
    transport: Callable[[str, float], bytes] | None = None
    now: Callable[[], dt.datetime] | None = None
    logger: logging.Logger | None = None

    @property
    def _log(self) -> logging.Logger:
        return self.logger or log

    def clock(self) -> dt.datetime:
        """Now, aware (UTC unless the injected clock says otherwise)."""
        now = self.now() if self.now else dt.datetime.now(dt.UTC)
        return now if now.tzinfo else now.replace(tzinfo=dt.UTC)

    def today(self) -> dt.date:
        """Today's date in New York (the exchange's calendar day)."""
        return self.clock().astimezone(EASTERN).date()

    def url(self, params: Mapping[str, str]) -> str:
        """The request URL (holds the key: never log it unredacted)."""
        return f"{self.base_url}?{urllib.parse.urlencode({**params, 'apikey': self.api_key})}"

    def fetch(self, params: Mapping[str, str], *, context: str) -> Mapping[str, Any] | str:
        """The body of one query (parsed JSON object or CSV text), retrying rate limits and network errors."""
        if not self.api_key or not self.api_key.strip():
            raise ApiKeyError(
                f"{context}: no Alpha Vantage API key configured (empty key); no request was made"
            )
        transport = self.transport or urllib_get
        url = self.url(params)
        budget, wait, slept, attempts = self.retry_budget_s, self.backoff_s, 0.0, 0
        shown = " ".join(f"{k}={v}" for k, v in params.items())
        while True:
            attempts += 1
            self._log.debug("Alpha Vantage request %s (attempt %d)", redact(shown, self.api_key), attempts)
            try:
                body = transport(url, self.timeout_s)
            except (OSError, http.client.HTTPException) as exc:
                error = _network_error(exc, context, self.api_key)
            else:
                parsed, error = _decode(body, context, self.api_key)
                if error is None:
                    assert parsed is not None
                    return parsed
            # raised outside the except block: no __context__ holding the URL (and the key)
            if not error.retryable or slept + wait > budget:
                if error.retryable:
                    message = (
                        f"{error}; gave up after {attempts} attempt(s) and {slept:g} s of backoff "
                        f"(retry_budget_s={budget:g}, next wait would have been {wait:g} s)"
                    )
                elif attempts > 1:
                    message = f"{error} (attempt {attempts}, after {slept:g} s of backoff)"
                else:
                    message = str(error)
                final = type(error)(redact(message, self.api_key))
                final.attempts, final.slept_s = attempts, slept
                raise final
            self._log.warning(
                "%s; retrying in %g s (attempt %d, %g s of %g s backoff budget used)",
                redact(error, self.api_key),
                wait,
                attempts,
                slept,
                budget,
            )
            self.sleep(wait)
            slept += wait
            wait *= 2

    def daily(
        self,
        symbol: str,
        *,
        adjusted: bool = False,
        outputsize: Literal["compact", "full"] = "compact",
        datatype: Literal["json", "csv"] = "json",
    ) -> pl.DataFrame:
        """Raw daily bars of `symbol` (`RAW_SCHEMA`, sorted by date), an incomplete newest bar dropped.

        open/high/low/close are as traded; dividend / split are 0.0 / 1.0 when the endpoint has none.
        Raises an `AlphaVantageError` subclass (see `classify`).
        """
        if outputsize not in OUTPUTSIZES:
            raise ValueError(f"outputsize must be one of {OUTPUTSIZES}, not {outputsize!r}")
        if datatype not in DATATYPES:
            raise ValueError(f"datatype must be one of {DATATYPES}, not {datatype!r}")
        function = "TIME_SERIES_DAILY_ADJUSTED" if adjusted else "TIME_SERIES_DAILY"
        context = redact(f"Alpha Vantage {function} {symbol!r}", self.api_key)
        params = {"function": function, "symbol": symbol, "outputsize": outputsize, "datatype": datatype}
        body = self.fetch(params, context=context)
        if isinstance(body, Mapping):
            bars, last = _json_bars(body, symbol, context, self.api_key)
        else:
            bars, last = _csv_bars(body, symbol, context, self.api_key), None
        if bars.height and not newest_bar_complete(bars["date"][-1], last, self.clock()):
            self._log.info(
                "%s: dropped the newest bar %s, not complete yet (last refreshed %s, now %s)",
                context,
                bars["date"][-1],
                last or "unknown (CSV)",
                self.clock().astimezone(EASTERN).isoformat(timespec="seconds"),
            )
            bars = bars.head(bars.height - 1)
        if bars.height:
            self._log.info(
                "%s (%s, %s): %d bars %s..%s",
                context,
                outputsize,
                datatype,
                bars.height,
                bars["date"][0],
                bars["date"][-1],
            )
        else:
            self._log.info("%s (%s, %s): no bars", context, outputsize, datatype)
        return bars


# --- source -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlphaVantageSource:
    """Bars for `symbols` from Alpha Vantage, in the OHLCV contract (see the module docstring).

    outputsize "auto" asks for compact (the latest 100 bars) when `start` is within the latest 95 NYSE
    sessions up to the client's today, full otherwise. Each symbol is fetched once per `bars` call and
    adjusted forward (`quantlab.curator.adjust.apply_actions`) from its first fetched bar; the caller
    rescales to continue a stored history. The unadjusted endpoint has no actions: factor 1, splits show as
    raw jumps (flagged by the quality gate).
    """

    client: AlphaVantageClient
    symbols: tuple[str, ...]
    adjusted: bool = False
    outputsize: Literal["auto", "compact", "full"] = "auto"
    datatype: Literal["json", "csv"] = "json"
    name: str = "alphavantage"

    def __post_init__(self) -> None:
        symbols = (self.symbols,) if isinstance(self.symbols, str) else tuple(self.symbols)
        bad = [s for s in symbols if not isinstance(s, str) or not s.strip()]
        if bad:
            raise ValueError(f"empty or non-text symbols: {bad!r}")
        object.__setattr__(self, "symbols", tuple(dict.fromkeys(s.strip() for s in symbols)))
        if self.outputsize not in ("auto", *OUTPUTSIZES):
            raise ValueError(f"outputsize must be auto, compact or full, not {self.outputsize!r}")
        if self.datatype not in DATATYPES:
            raise ValueError(f"datatype must be json or csv, not {self.datatype!r}")

    def outputsize_for(self, start: dt.date) -> Literal["compact", "full"]:
        """The outputsize a request for bars from `start` uses."""
        if self.outputsize != "auto":
            return self.outputsize
        return auto_outputsize(start, self.client.today())

    def bars(self, start: dt.date, end: dt.date) -> pl.DataFrame:
        """Bars dated in [start, end] in the OHLCV contract, sorted by symbol and date."""
        size = self.outputsize_for(start)
        frames = [
            apply_actions(
                self.client.daily(symbol, adjusted=self.adjusted, outputsize=size, datatype=self.datatype)
            )
            for symbol in self.symbols
        ]
        return (
            pl.concat([pl.DataFrame(schema=OHLCV_SCHEMA), *frames])
            .filter(pl.col("date").is_between(start, end))
            .sort("symbol", "date", maintain_order=True)
        )

    def registry(self) -> pl.DataFrame:
        """symbol, name (= symbol), sector ("unknown") of every configured symbol."""
        symbols = sorted(self.symbols)
        return pl.DataFrame(
            {"symbol": symbols, "name": symbols, "sector": ["unknown"] * len(symbols)}, schema=REGISTRY_SCHEMA
        )
