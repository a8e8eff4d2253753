"""The request grafana-client makes for an annotation, against a local server that records it.

Grafana itself cannot run here; this checks our call through the real client library, and that the
token goes to the configured Grafana only, whatever URL a subscription names.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import SecretStr

from tonewatch.core.settings import Settings
from tonewatch.notify.incidents import group_alerts
from tonewatch.notify.senders import deliver, send_grafana
from tonewatch.notify.subscriptions import new_subscription

(ALERT,) = group_alerts([{
    "id": "a1", "status": "firing", "dimension": "ticker", "key": "TSLA", "severity": "critical",
    "window": {"start": "2026-01-05T14:24:00Z", "end": "2026-01-05T14:25:00Z", "seconds": 60},
    "at": "2026-01-05T14:25:08Z", "top_messages": [{"text": "Tesla recalls cars", "message_id": "m1"}],
}], 300.0, {})  # an incident of one alert


class Recorder(ThreadingHTTPServer):
    """Grafana's annotation API, as far as the notifier uses it: find by tags, add, update."""

    status = 200
    requests: list[dict[str, Any]]
    annotations: dict[int, dict[str, Any]]


class Handler(BaseHTTPRequestHandler):
    server: Recorder

    def _answer(self, doc: Any) -> None:
        out = json.dumps(doc).encode()
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def _record(self) -> dict[str, Any]:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        req = {"method": self.command, "path": self.path, "headers": dict(self.headers),
               "json": json.loads(body) if body else None}
        self.server.requests.append(req)
        return req

    def do_GET(self) -> None:
        query = parse_qs(urlsplit(self._record()["path"]).query)
        found = [{"id": i, **a} for i, a in self.server.annotations.items() if set(query["tags"]) <= set(a["tags"])]
        self._answer(found)

    def do_POST(self) -> None:
        req = self._record()
        if self.server.status == 200:
            self.server.annotations[len(self.server.annotations) + 1] = req["json"]
        self._answer({"id": len(self.server.annotations), "message": "Annotation added"})

    def do_PUT(self) -> None:
        req = self._record()
        self.server.annotations[int(self.path.rsplit("/", 1)[1])] = req["json"]
        self._answer({"message": "Annotation updated"})

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def grafana() -> Iterator[Recorder]:
    srv = Recorder(("127.0.0.1", 0), Handler)
    srv.requests, srv.annotations = [], {}
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_one_annotation_per_incident_updated_by_each_version(grafana: Recorder) -> None:
    url = f"http://127.0.0.1:{grafana.server_address[1]}"
    assert send_grafana(url, ALERT, "tok-123", 5) == ("delivered", "annotation created")
    find, add = grafana.requests
    assert (find["method"], add["method"], add["path"]) == ("GET", "POST", "/api/annotations")
    assert parse_qs(urlsplit(find["path"]).query)["tags"] == ["tonewatch", f"incident:{ALERT['id']}"]
    assert add["headers"]["Authorization"] == "Bearer tok-123"
    assert add["json"]["tags"] == ["tonewatch", f"incident:{ALERT['id']}", "ticker", "TSLA", "critical"]
    assert add["json"]["time"] == 1767623040000 and add["json"]["timeEnd"] == 1767623100000
    assert "Tesla recalls cars" in add["json"]["text"]

    resolved = {**ALERT, "version": 2, "status": "resolved"}
    assert send_grafana(url, resolved, "tok-123", 5) == ("delivered", "annotation updated")
    assert [r["method"] for r in grafana.requests[2:]] == ["GET", "PUT"]
    assert grafana.requests[-1]["path"] == "/api/annotations/1"
    (only,) = grafana.annotations.values()
    assert only["text"].startswith("resolved critical incident TSLA")


@pytest.mark.parametrize(("status", "outcome"), [(500, "retry"), (400, "permanent")])
def test_annotation_failures_are_classified(grafana: Recorder, status: int, outcome: str) -> None:
    grafana.status = status
    assert send_grafana(f"http://127.0.0.1:{grafana.server_address[1]}", ALERT, None, 5)[0] == outcome


def test_grafana_down_is_retried() -> None:
    assert send_grafana("http://127.0.0.1:9", ALERT, None, 2)[0] == "retry"


def _recorder() -> Recorder:
    srv = Recorder(("127.0.0.1", 0), Handler)
    srv.requests, srv.annotations = [], {}
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def test_the_grafana_token_goes_only_to_the_configured_grafana(grafana: Recorder) -> None:
    ours = f"http://127.0.0.1:{grafana.server_address[1]}"
    attacker = _recorder()
    try:
        settings = Settings().updated(delivery__grafana_url=ours, delivery__grafana_token=SecretStr("tok-123"))
        stolen = new_subscription(kind="grafana", url=f"http://127.0.0.1:{attacker.server_address[1]}/")
        outcome, detail = deliver(settings, stolen, ALERT)
        assert attacker.requests == []
        assert outcome == "permanent" and "not the configured Grafana" in detail  # dead-lettered with this reason
        assert deliver(settings, new_subscription(kind="grafana", url=ours + "/"), ALERT)[0] == "delivered"
        assert [r["headers"]["Authorization"] for r in grafana.requests] == ["Bearer tok-123"] * 2  # find, add
    finally:
        attacker.shutdown()
        attacker.server_close()


def test_grafana_subscriptions_need_a_configured_grafana(grafana: Recorder) -> None:
    unset = Settings().updated(delivery__grafana_url=None, delivery__grafana_token=SecretStr("tok-123"))
    sub = new_subscription(kind="grafana", url=f"http://127.0.0.1:{grafana.server_address[1]}")
    outcome, detail = deliver(unset, sub, ALERT)
    assert outcome == "permanent" and "TONEWATCH_DELIVERY__GRAFANA_URL" in detail
    assert grafana.requests == []
