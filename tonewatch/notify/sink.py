"""A webhook receiver that checks Tonewatch's signature: for the demo and for people wiring a new receiver."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tonewatch.notify.signing import verify


class WebhookSink:
    """Accepts signed incident POSTs on 127.0.0.1; a bad signature gets 401 and is kept apart."""

    def __init__(self, secret: str, port: int = 0) -> None:
        self.secret = secret
        self.received: list[dict[str, Any]] = []
        self.rejected = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook-sink", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/alerts"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                ok = verify(sink.secret, self.headers.get("X-Tonewatch-Timestamp", ""), body,
                            self.headers.get("X-Tonewatch-Signature", ""), now=time.time())
                with sink._lock:
                    if ok:
                        sink.received.append(json.loads(body))
                    else:
                        sink.rejected += 1
                self.send_response(204 if ok else 401)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # quiet: the caller reports
                pass

        return Handler

    def __enter__(self) -> WebhookSink:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
