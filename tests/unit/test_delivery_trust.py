"""A subscription's URL is untrusted: no private or metadata addresses, no redirects, a capped error body,
only TONEWATCH_WEBHOOK_SECRET_* secrets, and a total deadline. Real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import ipaddress
import json
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from tonewatch.core.settings import Settings
from tonewatch.notify.egress import ERROR_BODY_BYTES, Egress, parse_networks, refusal
from tonewatch.notify.incidents import group_alerts
from tonewatch.notify.notifier import DELIVERY_THREADS
from tonewatch.notify.senders import deliver
from tonewatch.notify.subscriptions import Subscription, apply_record, new_subscription

# what the notifier delivers: an incident (here of one alert)
(ALERT,) = group_alerts([{"id": "a1", "status": "firing", "dimension": "ticker", "key": "TSLA",
                          "severity": "critical", "at": "2026-01-05T14:25:08Z", "top_messages": []}], 300.0, {})
LOOPBACK = "127.0.0.0/8,::1/128"


def settings(**overrides: Any) -> Settings:
    return Settings().updated(**{"delivery__webhook_secret": SecretStr("s3cret"), "delivery__timeout_s": 2.0,
                                 **overrides})


class Receiver(ThreadingHTTPServer):
    """Records each request; ``answer`` writes the response."""

    daemon_threads = True
    requests: list[dict[str, Any]]
    answer: Callable[[BaseHTTPRequestHandler], None]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    server: Receiver

    def _record(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                                     "body": body})
        self.server.answer(self)

    do_GET = do_POST = _record

    def log_message(self, *args: Any) -> None:
        pass


def _no_content(h: BaseHTTPRequestHandler) -> None:
    h.send_response(204)
    h.end_headers()


@pytest.fixture
def receivers() -> Iterator[Callable[..., Receiver]]:
    made: list[Receiver] = []

    def make(answer: Callable[[BaseHTTPRequestHandler], None] = _no_content) -> Receiver:
        srv = Receiver(("127.0.0.1", 0), Handler)
        srv.requests, srv.answer = [], answer
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        made.append(srv)
        return srv

    yield make
    for srv in made:
        srv.shutdown()
        srv.server_close()


@pytest.mark.parametrize(("address", "allowed", "why"), [
    ("127.0.0.1", "", "loopback"), ("::1", "", "loopback"), ("::ffff:127.0.0.1", "", "loopback"),
    ("10.1.2.3", "", "private"), ("172.16.0.1", "", "private"), ("192.168.1.1", "", "private"),
    ("fc00::1", "", "private"), ("169.254.1.1", "", "link-local"), ("fe80::1", "", "link-local"),
    ("0.0.0.0", "", "private"), ("100.64.0.1", "", "not a public address"), ("224.0.0.1", "", "multicast"),
    ("169.254.169.254", "0.0.0.0/0", "metadata"), ("fd00:ec2::254", "::/0", "metadata"),
    ("100.100.100.200", "0.0.0.0/0", "metadata"),
    ("8.8.8.8", "", None), ("2001:4860:4860::8888", "", None),
    ("10.1.2.3", "10.0.0.0/8", None), ("127.0.0.1", LOOPBACK, None), ("::1", LOOPBACK, None),
])
def test_which_addresses_are_refused(address: str, allowed: str, why: str | None) -> None:
    found = refusal(ipaddress.ip_address(address), parse_networks(allowed))
    assert found == why if why is None else why in str(found)


def test_allowed_networks_are_checked_at_start_up() -> None:
    with pytest.raises(ValidationError):
        settings(delivery__allowed_networks="10.0.0.0/33")


@pytest.mark.parametrize("kind", ["webhook", "alertmanager"])
def test_loopback_destinations_are_refused_after_dns(receivers: Callable[..., Receiver], kind: str) -> None:
    hook = receivers()
    port = hook.server_address[1]
    for url in (f"http://localhost:{port}/hook", f"http://127.0.0.1:{port}/hook"):  # a name, then a literal
        outcome, detail = deliver(settings(), new_subscription(kind=kind, url=url), ALERT)
        assert outcome == "permanent" and "loopback" in detail, detail  # dead-lettered at once, with why
    assert hook.requests == []


def test_the_allow_list_admits_on_premises_receivers(receivers: Callable[..., Receiver]) -> None:
    hook = receivers()
    sub = new_subscription(kind="webhook", url=f"http://localhost:{hook.server_address[1]}/hook")
    assert deliver(settings(delivery__allowed_networks=LOOPBACK), sub, ALERT) == ("delivered", "HTTP 204")
    assert json.loads(hook.requests[0]["body"]) == ALERT


def test_cloud_metadata_stays_refused_even_when_allow_listed() -> None:
    sub = new_subscription(kind="webhook", url="http://169.254.169.254/latest/meta-data/")
    outcome, detail = deliver(settings(delivery__allowed_networks="0.0.0.0/0,::/0"), sub, ALERT)
    assert outcome == "permanent" and "metadata" in detail


def test_the_connection_goes_to_the_address_that_was_checked(receivers: Callable[..., Receiver]) -> None:
    hook = receivers()
    port = hook.server_address[1]
    sub = new_subscription(kind="webhook", url=f"http://hook.invalid:{port}/h")  # resolvable only by our resolver
    pinned = Egress(parse_networks("127.0.0.1/32"), 2.0, resolve=lambda host, _: ["127.0.0.1"])
    assert deliver(settings(), sub, ALERT, pinned)[0] == "delivered"
    assert hook.requests[0]["headers"]["Host"] == f"hook.invalid:{port}"  # the URL's name, the checked address
    private = Egress(parse_networks("127.0.0.1/32"), 2.0, resolve=lambda host, _: ["127.0.0.1", "10.0.0.7"])
    outcome, detail = deliver(settings(), sub, ALERT, private)
    assert outcome == "permanent" and "10.0.0.7" in detail
    assert len(hook.requests) == 1


def test_redirects_are_not_followed(receivers: Callable[..., Receiver]) -> None:
    target = receivers()

    def redirect(h: BaseHTTPRequestHandler) -> None:
        h.send_response(302)
        h.send_header("Location", f"{target.url}/steal")
        h.send_header("Content-Length", "0")
        h.end_headers()

    hook = receivers(redirect)
    sub = new_subscription(kind="webhook", url=f"{hook.url}/hook")
    outcome, detail = deliver(settings(delivery__allowed_networks=LOOPBACK), sub, ALERT)
    assert target.requests == []  # the signed headers never reach the redirect's target
    assert outcome == "permanent" and detail.startswith("HTTP 302") and "not followed" in detail


def test_only_the_start_of_an_error_body_is_read_and_kept(receivers: Callable[..., Receiver]) -> None:
    total, chunk = 64 << 20, b"x" * 65536
    written: list[int] = []

    def huge_error(h: BaseHTTPRequestHandler) -> None:
        h.send_response(500)
        h.send_header("Content-Length", str(total))
        h.end_headers()
        sent = 0
        try:
            while sent < total:
                h.wfile.write(chunk)
                sent += len(chunk)
        except OSError:  # the notifier hung up after reading what it keeps
            pass
        written.append(sent)

    hook = receivers(huge_error)
    sub = new_subscription(kind="webhook", url=f"{hook.url}/hook")
    outcome, detail = deliver(settings(delivery__allowed_networks=LOOPBACK), sub, ALERT)
    assert outcome == "retry" and detail.startswith("HTTP 500: xxxx")
    assert len(detail) <= ERROR_BODY_BYTES + len("HTTP 500: ")
    deadline = time.monotonic() + 10
    while not written and time.monotonic() < deadline:
        time.sleep(0.05)
    assert written and written[0] < total // 4, "the whole error body was read"


def test_secret_env_names_only_webhook_secret_variables(
    receivers: Callable[..., Receiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = receivers()
    with pytest.raises(ValidationError, match="TONEWATCH_WEBHOOK_SECRET_"):
        new_subscription(kind="webhook", url=f"{hook.url}/h", secret_env="AWS_SECRET_ACCESS_KEY")
    assert new_subscription(kind="webhook", url=hook.url, secret_env="TONEWATCH_WEBHOOK_SECRET_DESK").secret_env
    # a record written to the topic by hand (or by an older version) still loads, and is refused when sent
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "cloud-key")
    subs: dict[str, Subscription] = {}
    record = {"id": "s1", "kind": "webhook", "url": f"{hook.url}/h", "secret_env": "AWS_SECRET_ACCESS_KEY"}
    apply_record(subs, b"s1", json.dumps(record).encode())
    outcome, detail = deliver(settings(delivery__allowed_networks=LOOPBACK), subs["s1"], ALERT)
    assert outcome == "permanent" and "TONEWATCH_WEBHOOK_SECRET_" in detail
    assert hook.requests == []


class Trickle(socketserver.ThreadingTCPServer):
    """Answers a status line, then one header byte every 0.1 s until stopped: each read is quick, the whole never."""

    daemon_threads = allow_reuse_address = True
    request_queue_size = 64  # all of them connect at once: none may fail fast on a full accept backlog
    stopping = threading.Event()

    class Handler(socketserver.BaseRequestHandler):
        server: Trickle

        def handle(self) -> None:
            self.request.recv(65536)
            try:
                self.request.sendall(b"HTTP/1.1 200 OK\r\n")
                while not self.server.stopping.wait(0.1):
                    self.request.sendall(b"X")
            except OSError:
                pass


@pytest.fixture
def trickle() -> Iterator[Trickle]:
    srv = Trickle(("127.0.0.1", 0), Trickle.Handler)
    srv.stopping = threading.Event()
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.stopping.set()
    srv.shutdown()
    srv.server_close()


def test_a_slow_receiver_is_cut_at_the_total_deadline(trickle: Trickle) -> None:
    sub = new_subscription(kind="webhook", url=f"http://127.0.0.1:{trickle.server_address[1]}/h")
    local = settings(delivery__allowed_networks=LOOPBACK, delivery__timeout_s=1.0)
    with ThreadPoolExecutor(1) as pool:
        t0 = time.monotonic()
        attempt = pool.submit(deliver, local, sub, ALERT)
        try:
            outcome, detail = attempt.result(timeout=5)
        finally:
            trickle.stopping.set()  # lets a client without a deadline go, so the test ends either way
    assert time.monotonic() - t0 < 2.5
    assert outcome == "retry" and "deadline" in detail


def test_slow_receivers_filling_every_thread_do_not_stall_delivery(
    trickle: Trickle, receivers: Callable[..., Receiver]
) -> None:
    slow = new_subscription(kind="webhook", url=f"http://127.0.0.1:{trickle.server_address[1]}/h")
    fast_hook = receivers()
    fast = new_subscription(kind="webhook", url=f"{fast_hook.url}/h")
    local = settings(delivery__allowed_networks=LOOPBACK, delivery__timeout_s=1.0)
    with ThreadPoolExecutor(DELIVERY_THREADS) as pool:  # as the notifier sends: one pool, one thread a request
        for _ in range(DELIVERY_THREADS):
            pool.submit(deliver, local, slow, ALERT)
        queued = pool.submit(deliver, local, fast, ALERT)
        try:
            assert queued.result(timeout=5)[0] == "delivered"
        finally:
            trickle.stopping.set()
