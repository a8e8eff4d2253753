"""The report from records built by the pipeline's own pure functions, so formats cannot drift apart."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from streams.errors import dead_letter_record
from streams.records import Scored
from streams.windows.alerts import alert_payload
from streams.windows.detector import KeyState, TrendEvent, apply_event
from streams.windows.trends import trend_record
from tonewatch.core.sections import DetectorSettings
from tonewatch.report import data as d
from tonewatch.report.render import render_html, write_report

CFG = DetectorSettings(window_s=60, allowed_lateness_s=120)
T0 = datetime(2026, 1, 5, 14, 0, tzinfo=UTC).timestamp()


def make_run(minutes: int = 30, surge: range = range(20, 23)) -> d.RunInput:
    """Calm AAPL and TSLA chatter; TSLA turns negative during ``surge``; models v2 from minute 15."""
    scored: list[dict[str, Any]] = []
    trends: list[dict[str, Any]] = []
    alerts: list[dict[str, Any]] = []
    states: dict[str, KeyState] = {}
    for minute in range(minutes):
        for i in range(12):
            ticker = "TSLA" if i % 2 else "AAPL"
            negative = (ticker == "TSLA" and minute in surge) or i == 0
            source = "chat" if i % 4 == 3 else "news"
            versions = {"sentiment": "2" if minute >= 15 else "1", "topic": "1"}
            text = f"{ticker} <b>falls</b> {minute}-{i}" if negative else f"{ticker} steady {minute}-{i}"
            ts = T0 + minute * 60 + i * 5
            p_neg = 0.9 if negative else 0.1
            scored.append(json.loads(Scored(
                id=f"m{minute}-{i}", source=source, ts=datetime.fromtimestamp(ts, UTC), text=text,
                tickers=(ticker,), sentiment="negative" if negative else "neutral",
                sentiment_probs={"negative": p_neg, "neutral": 1 - p_neg, "positive": 0.0}, topic="Stock Movement",
                topic_probs={"Stock Movement": 1.0}, model_versions=versions,
                scored_at=datetime.fromtimestamp(ts + 1, UTC), inference_ms=5.0,
            ).to_json()))
            ev = TrendEvent("ticker", ticker, ts, negative, p_neg, f"m{minute}-{i}", text, source, versions)
            u = apply_event(states.get(ticker, KeyState()), ev, CFG)
            states[ticker] = u.state
            trends += [trend_record("ticker", ticker, c, CFG.window_s) for c in u.closed]
            alerts += [alert_payload(t, "ticker", ticker, CFG.window_s, CFG.allowed_lateness_s) for t in u.transitions]
    dead = [dead_letter_record("not JSON: Expecting value: line 1 column 1 (char 0)", b"{", stage="validate",
                               topic="t.news", partition=0, offset=3),
            dead_letter_record("not UTF-8: invalid start byte at byte 0", b"\xff", stage="validate",
                               topic="t.chat", partition=1, offset=9),
            dead_letter_record("later than allowed lateness (120s)", b"{}", stage="windows")]
    return d.RunInput(scored=scored, trends=trends, alerts=alerts, dead=dead)


@pytest.fixture(scope="module")
def run() -> d.RunInput:
    return make_run()


def test_the_fixture_surge_fires_and_resolves(run: d.RunInput) -> None:
    assert [(a["status"], a["key"]) for a in run.alerts] == [("firing", "TSLA"), ("resolved", "TSLA")]


def test_summary_counts_every_topic(run: d.RunInput) -> None:
    s = d.summarise(run)
    assert s.scored_by_source == {"chat": 90, "news": 270}
    assert s.dead_by_stage == {"validate": 2, "windows": 1}
    assert dict(s.top_dead_reasons) == {"not JSON": 1, "not UTF-8": 1, "later than allowed lateness (120s)": 1}
    assert (s.fired, s.resolved) == (1, 1)
    assert s.model_versions == {"sentiment v1 · topic v1": 180, "sentiment v2 · topic v1": 180}
    assert s.first_ts == datetime.fromtimestamp(T0, UTC)


def test_baseline_shown_is_the_one_each_window_was_judged_against(run: d.RunInput) -> None:
    s = d.key_series(run, "ticker", "TSLA")
    rows = sorted((t for t in run.trends if t["key"] == "TSLA"), key=lambda t: t["window_start"])
    assert s.baselines[0] is None and s.baselines[1:] == [t["baseline"] for t in rows[:-1]]
    assert s.starts == sorted(s.starts) and len(s.starts) == len(rows) == len(s.counts)
    # six of six negative on a key that never had one: sharp, so it fires once the surge outlasts one window
    assert s.firing == [datetime.fromtimestamp(T0 + 21 * 60, UTC)]
    assert s.resolved and s.resolved[0] > s.firing[0]
    surge_windows = [st.minute for st, a in zip(s.starts, s.alerting, strict=True) if a]
    assert 21 in surge_windows and 25 not in surge_windows


def test_alerting_keys_come_first_then_the_busiest_tickers(run: d.RunInput) -> None:
    assert d.pick_keys(run, 6) == [("ticker", "TSLA"), ("ticker", "AAPL")]
    assert d.pick_keys(run, 1) == [("ticker", "TSLA")]
    calm = d.RunInput(scored=run.scored, trends=run.trends)
    assert d.pick_keys(calm, 1) in ([("ticker", "AAPL")], [("ticker", "TSLA")])


def test_versions_over_time_split_at_the_rollout(run: d.RunInput) -> None:
    v = d.versions_over_time(run, 60)
    assert max(v["sentiment v1 · topic v1"]) < min(v["sentiment v2 · topic v1"])
    assert sum(v["sentiment v2 · topic v1"].values()) == 180
    assert set(d.volume_by_source(run, 60)) == {"chat", "news"}


def test_page_names_the_alert_embeds_the_plots_and_escapes_text(run: d.RunInput, tmp_path: Path) -> None:
    path = write_report(run, tmp_path / "out", source="topics t1.*", keys=6)
    page = path.read_text(encoding="utf-8")
    assert path.name == "index.html" and not list(path.parent.glob(".*tmp"))
    pngs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(pngs) == 4  # TSLA, AAPL, volume, model versions
    assert all(base64.b64decode(p).startswith(b"\x89PNG") for p in pngs)
    assert "ticker <b>TSLA</b>" in page and "firing" in page and "resolved" in page
    assert "&lt;b&gt;falls&lt;/b&gt;" in page and "<b>falls</b>" not in page  # message text is escaped
    assert "2026-01-05 14:21&ndash;14:22 UTC" in page
    assert "sentiment v2 · topic v1 180" in page and "validate 2" in page


def test_an_empty_run_still_renders() -> None:
    page = render_html(d.RunInput(), source="topics empty.*")
    assert "No alert fired" in page and "No closed windows yet" in page and page.count("<img") == 2


def test_lines_break_where_a_key_had_no_window() -> None:
    import math

    from tonewatch.report.plots import _broken

    day = 60 / 86400
    xs, ys = _broken([0.0, day, 4 * day], [0.1, None, 0.3], 60)
    assert xs == [0.0, day, 2 * day, 4 * day]
    assert ys[0] == 0.1 and math.isnan(ys[1]) and math.isnan(ys[2]) and ys[3] == 0.3
