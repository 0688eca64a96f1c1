"""A local HTTP server answering like Alpha Vantage from the recorded fixtures (tests only; no network)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

FIX = Path(__file__).parent / "fixtures" / "alphavantage"
INVALID = "error_invalid_symbol.json"


@contextmanager
def serve(routes: Mapping[tuple[str, str, str], str]) -> Iterator[tuple[str, list[dict[str, str]]]]:
    """Serve fixture files by (function, symbol, datatype); yields (base_url, queries seen).

    Unknown routes get the invalid-symbol error body; everything is HTTP 200, as Alpha Vantage does.
    """
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = dict(parse_qsl(urlsplit(self.path).query))
            seen.append(query)
            route = (query.get("function", ""), query.get("symbol", ""), query.get("datatype", "json"))
            payload = (FIX / routes.get(route, INVALID)).read_bytes()
            self.send_response(200)
            kind = "text/csv" if query.get("datatype") == "csv" and route in routes else "application/json"
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/query", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
