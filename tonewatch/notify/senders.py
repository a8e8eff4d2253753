"""One HTTP delivery per call, to a webhook, an Alertmanager or Grafana; never raises.

Each sender answers ``(outcome, detail)`` where outcome is delivered | retry | permanent, so the
notifier's retry logic is the same for every destination. Subscription URLs go through ``egress``
(checked addresses, no redirects, a total deadline); Grafana only ever gets the configured URL.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from tonewatch.core.errors import InvalidInput
from tonewatch.core.settings import Settings
from tonewatch.notify.egress import Egress, post
from tonewatch.notify.policy import Outcome, classify_status
from tonewatch.notify.signing import sign
from tonewatch.notify.subscriptions import WEBHOOK_SECRET_ENV, WEBHOOK_SECRET_PREFIX, Subscription

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


def send_webhook(url: str, alert: dict[str, Any], secret: str, egress: Egress) -> Result:
    body, headers = webhook_request(alert, secret, int(time.time()))
    return post(url, body, headers, egress)


def send_alertmanager(url: str, alert: dict[str, Any], hold_s: float, egress: Egress) -> Result:
    body = json.dumps([alertmanager_alert(alert, time.time(), hold_s)]).encode()
    return post(f"{url}/api/v2/alerts", body, {"Content-Type": "application/json"}, egress)


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


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:  # a port out of range
        raise InvalidInput(f"{url}: {exc}") from exc
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


def grafana_target(configured: str | None, subscribed: str) -> str:
    """Where a grafana subscription's annotations go: only the configured Grafana, which holds the token.

    Raises ``InvalidInput`` when none is configured or the subscription names another one: it may ask
    for annotations, never pick where the token is sent.
    """
    if not configured:
        raise InvalidInput("no Grafana configured (TONEWATCH_DELIVERY__GRAFANA_URL unset)")
    if _origin(subscribed) != _origin(configured):
        raise InvalidInput(f"grafana subscription names {subscribed}, not the configured Grafana {configured} "
                           "(TONEWATCH_DELIVERY__GRAFANA_URL); its token goes nowhere else")
    return configured.rstrip("/")


def _webhook_secret(settings: Settings, sub: Subscription) -> str:
    """The signing secret, unwrapped only here; raises ``InvalidInput`` when it cannot be used."""
    if sub.secret_env:
        # checked again here: a record written to the topic by hand skips the subscribe-time check
        if not WEBHOOK_SECRET_ENV.match(sub.secret_env):
            raise InvalidInput(f"secret env {sub.secret_env} is not a {WEBHOOK_SECRET_PREFIX}* variable")
        secret = os.environ.get(sub.secret_env)
    else:
        given = settings.delivery.webhook_secret
        secret = given.get_secret_value() if given else None
    if not secret:
        raise InvalidInput(f"no webhook secret ({sub.secret_env or 'TONEWATCH_DELIVERY__WEBHOOK_SECRET'} unset)")
    return secret


def deliver(settings: Settings, sub: Subscription, alert: dict[str, Any], egress: Egress | None = None) -> Result:
    """One attempt to the subscription's destination; a subscription that can never work is permanent."""
    egress = egress or Egress.from_settings(settings.delivery)
    try:
        if sub.kind == "webhook":
            return send_webhook(sub.url, alert, _webhook_secret(settings, sub), egress)
        if sub.kind == "alertmanager":
            return send_alertmanager(sub.url, alert, settings.delivery.alertmanager_hold_s, egress)
        # the operator's own Grafana: trusted, so neither the address check nor egress applies
        url = grafana_target(settings.delivery.grafana_url, sub.url)
    except InvalidInput as exc:
        return "permanent", str(exc)
    token = settings.delivery.grafana_token.get_secret_value() if settings.delivery.grafana_token else None
    return send_grafana(url, alert, token, settings.delivery.timeout_s)
