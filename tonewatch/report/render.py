"""One self-contained ``index.html``: figures embedded as base64 PNGs, so it can be mailed or archived."""

from __future__ import annotations

import base64
import html
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tonewatch.report import data as d
from tonewatch.report.plots import key_figure, stacked_figure

CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px auto;max-width:1280px;color:#1c2833;
padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d5dbe0;padding-bottom:4px}
.sub{color:#5d6d7e;margin:0 0 16px}
.cards{display:flex;gap:12px;flex-wrap:wrap}.card{border:1px solid #d5dbe0;border-radius:6px;padding:10px 14px;
min-width:200px;flex:1}.card b{font-size:22px;display:block}.card small{color:#5d6d7e}
table{border-collapse:collapse;width:100%;font-size:13px}th,td{border-bottom:1px solid #e5e8eb;padding:5px 8px;
text-align:left;vertical-align:top}th{background:#f4f6f7}td.num{text-align:right;white-space:nowrap}
.firing{color:#c0392b;font-weight:600}.resolved{color:#1e8449;font-weight:600}.critical{color:#fff;
background:#c0392b;border-radius:3px;padding:0 5px}.warning{background:#f5cba7;border-radius:3px;padding:0 5px}
ol{margin:0;padding-left:18px}img{width:100%;display:block;margin:6px 0 18px}.none{color:#5d6d7e}
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def _when(dt: datetime | None) -> str:
    return dt.strftime("%Y-%m-%d %H:%M:%S UTC") if dt else "&ndash;"


def _card(title: str, big: str, detail: str) -> str:
    return f'<div class="card"><small>{_e(title)}</small><b>{_e(big)}</b><small>{_e(detail)}</small></div>'


def _per(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in counts.items()) or "none"


def _header(s: d.Summary, source: str) -> str:
    scored = sum(s.scored_by_source.values())
    dead = sum(s.dead_by_stage.values())
    cards = [
        _card("messages scored", f"{scored:,}", _per(s.scored_by_source)),
        _card("dead-lettered", f"{dead:,}", "by stage: " + _per(s.dead_by_stage)),
        _card("alerts", f"{s.fired} fired · {s.resolved} resolved", "firing / resolved transitions"),
        _card("model versions seen", str(len(s.model_versions)), _per(s.model_versions)),
    ]
    reasons = "".join(f"<tr><td>{_e(r)}</td><td class=num>{n:,}</td></tr>" for r, n in s.top_dead_reasons)
    dead_table = (f"<h2>Dead-letter reasons</h2><table><tr><th>reason</th><th>messages</th></tr>{reasons}</table>"
                  if reasons else "")
    return (
        f"<h1>Tonewatch run report</h1><p class=sub>{_e(source)} · event time "
        f"{_when(s.first_ts)} &ndash; {_when(s.last_ts)} · generated {_when(datetime.now(UTC))}</p>"
        f'<div class="cards">{"".join(cards)}</div>{dead_table}'
    )


def _alerts_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<h2>Alerts</h2><p class=none>No alert fired in this run.</p>"
    body = []
    for a in rows:
        w = a["window"]
        top = "".join(f"<li>{_e(m['text'])} <small>({_e(m['source'])}, p(neg) {m['p_negative']:.2f})</small></li>"
                      for m in a.get("top_messages") or [])
        body.append(
            f"<tr><td class={_e(a['status'])}>{_e(a['status'])}</td><td><span class={_e(a['severity'])}>"
            f"{_e(a['severity'])}</span></td><td>{_e(a['dimension'])} <b>{_e(a['key'])}</b></td>"
            f"<td>{d.utc(w['start']):%Y-%m-%d %H:%M}&ndash;{d.utc(w['end']):%H:%M} UTC</td>"
            f"<td class=num>{a['negative_share']:.0%} vs {a['baseline']:.0%}</td><td class=num>{a['score']:.1f}</td>"
            f"<td class=num>{a['negative']}/{a['volume']}</td><td>{f'<ol>{top}</ol>' if top else ''}</td></tr>"
        )
    head = ("<tr><th>status</th><th>severity</th><th>key</th><th>window</th><th>negative share vs baseline</th>"
            "<th>z</th><th>negative / messages</th><th>top messages (masked)</th></tr>")
    return f"<h2>Alerts</h2><table>{head}{''.join(body)}</table>"


def render_html(run: d.RunInput, *, source: str, keys: int = 6) -> str:
    """The whole page as a string; every value read is escaped. ``source`` says what was read."""
    window_s = d.window_of(run)
    span = d.span(run, window_s)
    parts = [_header(d.summarise(run), source), _alerts_table(d.alert_rows(run))]
    parts.append("<h2>Negative share by key</h2><p class=sub>Every alerting key, then the busiest tickers. Line: "
                 "negative share per closed window; dashed: the baseline it was judged against; bars: volume; "
                 "shaded: windows while an alert was firing.</p>")
    chosen = d.pick_keys(run, keys)
    for dim, key in chosen:
        parts.append(_img(key_figure(d.key_series(run, dim, key), window_s, span), f"{dim} {key} negative share"))
    if not chosen:
        parts.append("<p class=none>No closed windows yet.</p>")
    parts.append("<h2>Volume</h2><p class=sub>Messages scored per window of event time.</p>")
    parts.append(_img(stacked_figure(d.volume_by_source(run, window_s), window_s,
                                     "by source", f"messages scored per {window_s}s", span),
                      "volume by source"))
    parts.append("<h2>Model versions</h2><p class=sub>Which model versions scored how many messages per window "
                 "of event time.</p>")
    parts.append(_img(stacked_figure(d.versions_over_time(run, window_s), window_s,
                                     "by model versions", f"messages scored per {window_s}s", span),
                      "model versions over time"))
    return ("<!doctype html><html lang=en><head><meta charset=utf-8><title>Tonewatch report "
            f"{_e(source)}</title><style>{CSS}</style></head><body>{''.join(parts)}</body></html>")


def write_report(run: d.RunInput, out: Path, *, source: str, keys: int = 6) -> Path:
    """Write ``out/index.html`` atomically (a reader never sees half a page) and return its path."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "index.html"
    tmp = out / ".index.html.tmp"
    tmp.write_text(render_html(run, source=source, keys=keys), encoding="utf-8")
    tmp.replace(path)
    return path
