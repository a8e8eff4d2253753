"""One HTTP delivery of an incident version per call, to a webhook, an Alertmanager or Grafana; never raises.

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


def idempotency_key(incident: dict[str, Any]) -> str:
    """``<incident id>:v<version>`` (``:escalation-N`` for a re-notification): one per delivered version."""
    kind = f":escalation-{incident['escalation']}" if incident.get("escalation") else ""
    return f"{incident['id']}:v{incident['version']}{kind}"


def webhook_request(incident: dict[str, Any], secret: str, now: int) -> tuple[bytes, dict[str, str]]:
    """Body and headers of a signed webhook POST (pure: the timestamp is an argument)."""
    body = json.dumps(incident, ensure_ascii=False, sort_keys=True).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Tonewatch-Timestamp": str(now),
        "X-Tonewatch-Signature": sign(secret, now, body),
        "Idempotency-Key": idempotency_key(incident),
    }
    return body, headers


def _top_text(doc: dict[str, Any]) -> str:
    top = doc.get("top_messages") or []
    return str(top[0].get("text", "")) if top else ""


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _summary(incident: dict[str, Any], child: dict[str, Any]) -> str:
    return (f"{incident['severity']} incident {incident['headline']} ({len(incident['children'])} alerts): "
            f"{child['dimension']}={child['key']} n={child.get('volume')}, z={child.get('score')}")


def alertmanager_alerts(incident: dict[str, Any], now: float, hold_s: float) -> list[dict[str, Any]]:
    """Alertmanager v2 alerts, one per child, labelled with the incident (the route groups by it), its
    headline and severity. A label set is an alert's identity, so the sets an incident had before its
    headline changed or its severity rose are ended here; a child's own set ends when it resolves.

    A firing child carries ``endsAt = now + hold_s``: without it Alertmanager would resolve it by itself
    after its ``resolve_timeout`` (5 min), because Tonewatch sends a change once instead of re-sending the
    alert every evaluation like Prometheus does.
    """
    headline, severity = str(incident["headline"]), str(incident["severity"])
    headlines = [headline, *map(str, incident.get("former_headlines") or [])]
    severities = [severity, *map(str, incident.get("former_severities") or [])]
    former = [(h, s) for h in headlines for s in severities if (h, s) != (headline, severity)]
    annotations = {"headline": headline, "top_message": _top_text(incident)}
    if incident.get("dashboard_url"):
        annotations["dashboard_url"] = str(incident["dashboard_url"])
    if incident.get("escalation"):
        annotations["escalation"] = str(incident["escalation"])
    out = []
    for child in incident["children"]:
        start = child.get("window", {}).get("start") or incident.get("at")
        for h, s, ended in [(headline, severity, child["status"] == "resolved"), *((h, s, True) for h, s in former)]:
            labels = {"alertname": ALERTNAME, "incident": str(incident["id"]), "headline": h, "severity": s,
                      "dimension": str(child["dimension"]), "key": str(child["key"]), "alert_id": str(child["id"])}
            # end it now: the incident's own times may be event time from a replay, far in the past or future
            alert = {"labels": labels, "annotations": {**annotations, "summary": _summary(incident, child)},
                     "startsAt": start, "endsAt": _iso(now if ended else now + hold_s)}
            if incident.get("dashboard_url"):
                alert["generatorURL"] = str(incident["dashboard_url"])
            out.append(alert)
    return out


def send_webhook(url: str, incident: dict[str, Any], secret: str, egress: Egress) -> Result:
    body, headers = webhook_request(incident, secret, int(time.time()))
    return post(url, body, headers, egress)


def send_alertmanager(url: str, incident: dict[str, Any], hold_s: float, egress: Egress) -> Result:
    body = json.dumps(alertmanager_alerts(incident, time.time(), hold_s)).encode()
    return post(f"{url}/api/v2/alerts", body, {"Content-Type": "application/json"}, egress)


def _epoch_ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def incident_tag(incident: dict[str, Any]) -> str:
    """The tag that finds an incident's annotation again, to update it."""
    return f"incident:{incident['id']}"


def grafana_annotation(incident: dict[str, Any]) -> dict[str, Any]:
    """Arguments of ``add_annotation``/``update_annotation``: a region from the first window to the last."""
    window = incident.get("window") or {}
    start = _epoch_ms(window.get("start") or incident["at"])
    end = _epoch_ms(window.get("end") or incident["at"])
    status = incident["status"] + (f" (escalation {incident['escalation']})" if incident.get("escalation") else "")
    keys = ", ".join(f"{c['dimension']}={c['key']}" for c in incident["children"])
    text = f"{status} {incident['severity']} incident {incident['headline']} ({keys}): {_top_text(incident)}"
    return {"time_from": start, "time_to": end, "text": text,
            "tags": ["tonewatch", incident_tag(incident), str(incident["root"]["dimension"]),
                     str(incident["headline"]), str(incident["severity"])]}


def send_grafana(url: str, incident: dict[str, Any], token: str | None, timeout_s: float) -> Result:
    """One annotation per incident: found again by its incident tag and updated, else added."""
    from grafana_client import GrafanaApi
    from grafana_client.client import (
        GrafanaBadInputError,
        GrafanaClientError,
        GrafanaException,
        GrafanaServerError,
        GrafanaTimeoutError,
    )

    api = GrafanaApi.from_url(url, credential=token, timeout=timeout_s)
    args = grafana_annotation(incident)
    try:
        found = api.annotations.find_annotations(tags=["tonewatch", incident_tag(incident)], ann_type="annotation",
                                                 limit=1)
        if isinstance(found, list) and found and isinstance(found[0], dict) and "id" in found[0]:
            api.annotations.update_annotation(found[0]["id"], **args)
            return "delivered", "annotation updated"
        api.annotations.add_annotation(**args)
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


def deliver(settings: Settings, sub: Subscription, incident: dict[str, Any], egress: Egress | None = None) -> Result:
    """One attempt to the subscription's destination; a subscription that can never work is permanent."""
    egress = egress or Egress.from_settings(settings.delivery)
    try:
        if sub.kind == "webhook":
            return send_webhook(sub.url, incident, _webhook_secret(settings, sub), egress)
        if sub.kind == "alertmanager":
            return send_alertmanager(sub.url, incident, settings.delivery.alertmanager_hold_s, egress)
        # the operator's own Grafana: trusted, so neither the address check nor egress applies
        url = grafana_target(settings.delivery.grafana_url, sub.url)
    except InvalidInput as exc:
        return "permanent", str(exc)
    token = settings.delivery.grafana_token.get_secret_value() if settings.delivery.grafana_token else None
    return send_grafana(url, incident, token, settings.delivery.timeout_s)
