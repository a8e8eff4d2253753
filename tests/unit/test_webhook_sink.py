"""The demo's webhook receiver accepts exactly the requests the notifier signs."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

from tonewatch.notify.signing import sign
from tonewatch.notify.sink import WebhookSink


def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_signed_alerts_are_kept_and_forged_ones_refused() -> None:
    body = json.dumps({"id": "a1", "status": "firing"}).encode()
    ts = int(time.time())
    with WebhookSink("s3cret") as sink:
        good = {"X-Tonewatch-Timestamp": str(ts), "X-Tonewatch-Signature": sign("s3cret", ts, body)}
        forged = {"X-Tonewatch-Timestamp": str(ts), "X-Tonewatch-Signature": sign("other", ts, body)}
        stale = {"X-Tonewatch-Timestamp": str(ts - 3600), "X-Tonewatch-Signature": sign("s3cret", ts - 3600, body)}
        assert _post(sink.url, body, good) == 204
        assert _post(sink.url, body, forged) == 401
        assert _post(sink.url, body, stale) == 401
    assert sink.received == [{"id": "a1", "status": "firing"}]
    assert sink.rejected == 2
    with pytest.raises(urllib.error.URLError):  # stopped means stopped
        _post(sink.url, body, good)
