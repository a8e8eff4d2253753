"""One HTTP delivery per call, to a webhook, an Alertmanager or Grafana; never raises.

Each sender answers ``(outcome, detail)`` where outcome is delivered | retry | permanent, so the
notifier's retry logic is the same for every destination.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any

from tonewatch.core.settings import Settings
from tonewatch.notify.policy import Outcome, classify_status
from tonewatch.notify.signing import sign
from tonewatch.notify.subscriptions import Subscription

ALERTNAME = "TonewatchNegativeSurge"
Result = tuple[Outcome, str]


def webhook_request(alert: dict[str, Any], secret: str, now: int) -> tuple[bytes, dict[str, str]]:
    """Body and headers of a signed webhook POST (pure: the timestamp is an argument)."""
    body = json.dumps(alert, ensure_ascii=False, sort_keys=True).encode()
    kind = f":escalation-{alert['escalation']}" if alert.get("escalation") else ""
    headers = {
        "Content-Type": "application/json",
        "X-Tonewatch-Timestamp": str(now),
        "X-Tonewatch-Signature": sign(secret, now, body),
        "Idempotency-Key": f"{alert['id']}:{alert['status']}{kind}",
    }
    return body, headers


def _top_text(alert: dict[str, Any]) -> str:
    top = alert.get("top_messages") or []
    return str(top[0].get("text", "")) if top else ""


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def alertmanager_alert(alert: dict[str, Any], now: float, hold_s: float) -> dict[str, Any]:
    """One Alertmanager v2 alert; the same labels for firing and resolved, so resolved ends it.

    A firing alert carries ``endsAt = now + hold_s``: without it Alertmanager would resolve it by
    itself after its ``resolve_timeout`` (5 min), because Tonewatch sends a state change once
    instead of re-sending the alert every evaluation like Prometheus does.
    """
    labels = {
        "alertname": ALERTNAME, "dimension": str(alert["dimension"]), "key": str(alert["key"]),
        "severity": str(alert["severity"]), "alert_id": str(alert["id"]),
    }
    annotations = {
        "summary": (f"negative share {alert.get('negative_share', 0):.0%} vs baseline "
                    f"{alert.get('baseline', 0):.0%} on {alert['dimension']}={alert['key']} "
                    f"(n={alert.get('volume')}, z={alert.get('score')})"),
        "top_message": _top_text(alert),
    }
    if alert.get("dashboard_url"):
        annotations["dashboard_url"] = str(alert["dashboard_url"])
    if alert.get("escalation"):
        annotations["escalation"] = str(alert["escalation"])
    out: dict[str, Any] = {"labels": labels, "annotations": annotations,
                           "startsAt": alert.get("window", {}).get("start") or alert["at"]}
    # end a resolved one now: the alert's own time may be event time from a replay, far in the past or future
    out["endsAt"] = _iso(now if alert["status"] == "resolved" else now + hold_s)
    if alert.get("dashboard_url"):
        out["generatorURL"] = str(alert["dashboard_url"])
    return out


def _post(url: str, body: bytes, headers: dict[str, str], timeout_s: float) -> Result:
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return classify_status(resp.status), f"HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        return classify_status(exc.code), f"HTTP {exc.code}: {exc.read()[:200].decode(errors='replace')}"
    except (urllib.error.URLError, OSError) as exc:  # refused, reset, DNS, timeout: the receiver may come back
        return "retry", f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"


def send_webhook(url: str, alert: dict[str, Any], secret: str, timeout_s: float) -> Result:
    body, headers = webhook_request(alert, secret, int(time.time()))
    return _post(url, body, headers, timeout_s)


def send_alertmanager(url: str, alert: dict[str, Any], hold_s: float, timeout_s: float) -> Result:
    body = json.dumps([alertmanager_alert(alert, time.time(), hold_s)]).encode()
    return _post(f"{url}/api/v2/alerts", body, {"Content-Type": "application/json"}, timeout_s)


def _epoch_ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def grafana_annotation(alert: dict[str, Any]) -> dict[str, Any]:
    """Arguments of ``GrafanaApi.annotations.add_annotation``: a region over the alert's window."""
    window = alert.get("window") or {}
    start = _epoch_ms(window.get("start") or alert["at"])
    end = _epoch_ms(window.get("end") or alert["at"])
    status = alert["status"] + (f" (escalation {alert['escalation']})" if alert.get("escalation") else "")
    text = f"{status} {alert['severity']} {alert['dimension']}={alert['key']}: {_top_text(alert)}"
    return {"time_from": start, "time_to": end, "text": text,
            "tags": ["tonewatch", str(alert["dimension"]), str(alert["key"]), str(alert["severity"])]}


def send_grafana(url: str, alert: dict[str, Any], token: str | None, timeout_s: float) -> Result:
    from grafana_client import GrafanaApi
    from grafana_client.client import (
        GrafanaBadInputError,
        GrafanaClientError,
        GrafanaException,
        GrafanaServerError,
        GrafanaTimeoutError,
    )

    api = GrafanaApi.from_url(url, credential=token, timeout=timeout_s)
    try:
        api.annotations.add_annotation(**grafana_annotation(alert))
    except (GrafanaServerError, GrafanaTimeoutError) as exc:
        return "retry", f"grafana: {exc}"
    except (GrafanaBadInputError, GrafanaClientError) as exc:
        code = getattr(exc, "status_code", 400)
        return classify_status(int(code)), f"grafana: {exc}"
    except GrafanaException as exc:
        return "retry", f"grafana: {exc}"
    except Exception as exc:  # niquests connection errors: the server may come back
        return "retry", f"grafana: {type(exc).__name__}: {exc}"
    return "delivered", "annotation created"


def deliver(settings: Settings, sub: Subscription, alert: dict[str, Any]) -> Result:
    """One attempt to the subscription's destination, secrets unwrapped only here."""
    timeout = settings.delivery.timeout_s
    if sub.kind == "webhook":
        # a per-subscription secret lives in the notifier's environment; the topic holds only its name
        secret = os.environ.get(sub.secret_env) if sub.secret_env else (
            settings.delivery.webhook_secret.get_secret_value() if settings.delivery.webhook_secret else None)
        if not secret:
            return "permanent", f"no webhook secret ({sub.secret_env or 'TONEWATCH_DELIVERY__WEBHOOK_SECRET'} unset)"
        return send_webhook(sub.url, alert, secret, timeout)
    if sub.kind == "alertmanager":
        return send_alertmanager(sub.url, alert, settings.delivery.alertmanager_hold_s, timeout)
    token = settings.delivery.grafana_token.get_secret_value() if settings.delivery.grafana_token else None
    return send_grafana(sub.url, alert, token, timeout)
