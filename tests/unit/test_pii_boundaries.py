"""Personal data stops at the worker: chat text is masked before Triton reads it, and a dead letter keeps a
masked copy of its input (the original stays at its topic, partition and offset)."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

from aiokafka import TopicPartition

from streams.pii import mask_payload
from tests.unit.test_score_stage import run_batches, uniform_outputs
from tonewatch.core.settings import Settings

EMAIL, PHONE = "jane.doe@example.com", "+44 20 7946 0958"


def _record(offset: int, body: Any) -> Any:
    value = body if isinstance(body, bytes) else json.dumps(body).encode()
    return SimpleNamespace(topic=Settings().kafka.topic("chat"), partition=0, offset=offset, key=None, value=value)


def test_triton_reads_chat_text_masked_and_news_as_written() -> None:
    seen: list[str] = []

    async def score(texts: list[str], keys: list[str], routes: Any) -> Any:
        seen.extend(texts)
        return uniform_outputs(len(texts))

    chat = TopicPartition(Settings().kafka.topic("chat"), 0)
    news = TopicPartition(Settings().kafka.topic("news"), 0)
    batch = {chat: [_record(0, {"id": "c1", "source": "chat", "ts": "2026-11-24T00:00:00Z",
                                "text": f"$TSLA dump, mail {EMAIL} or call {PHONE}"})],
             news: [SimpleNamespace(topic=news.topic, partition=0, offset=0, key=None, value=json.dumps(
                 {"id": "n1", "source": "news", "ts": "2026-11-24T00:00:01Z", "text": "Tesla falls 5%"}).encode())]}

    producer = run_batches([batch], score)
    assert seen == ["$TSLA dump, mail <email> or call <phone>", "Tesla falls 5%"]
    scored = [json.loads(v) for t, _, recs in producer.sent if t.endswith(".scored") for _, v in recs]
    assert [r["text"] for r in scored] == seen


def test_a_dead_letter_keeps_a_masked_copy_without_author_or_channel() -> None:
    chat = TopicPartition(Settings().kafka.topic("chat"), 0)
    invalid = {"id": "c2", "source": "chat", "ts": "not a time", "text": f"write me at {EMAIL}",
               "author": "Jane Doe", "channel": "#desk-jane"}
    batch = {chat: [_record(7, invalid), _record(8, f"garbage {EMAIL}".encode()), _record(9, b"\xff" + EMAIL.encode())]}

    producer = run_batches([batch])
    dead = [json.loads(v) for t, _, recs in producer.sent if t.endswith(".dead-letter") for _, v in recs]
    assert [(d["stage"], d["offset"]) for d in dead] == [("validate", 7), ("validate", 8), ("validate", 9)]
    first = json.loads(dead[0]["payload"])
    assert first == {**invalid, "text": "write me at <email>", "author": "<withheld>", "channel": "<withheld>"}
    assert dead[1]["payload"] == "garbage <email>"
    assert dead[2]["payload"] is None  # not UTF-8: cannot be masked, so not copied; topic and offset find it
    assert all(EMAIL not in json.dumps(d) and "Jane" not in json.dumps(d) for d in dead)


def test_mask_payload_leaves_what_finds_the_record() -> None:
    raw = {"id": "1234567890123", "source": "chat", "ts": "2026-11-24T00:00:00Z", "tickers": ["TSLA"], "text": "ok"}
    assert json.loads(mask_payload(json.dumps(raw).encode()) or "") == raw  # a tweet id is not an account number
    assert mask_payload(None) is None
    assert mask_payload(b"[1, 2]") == "[1, 2]"


def test_a_deeply_nested_payload_is_masked_without_a_recursion_error() -> None:
    """json.loads raised RecursionError on it, which failed the batch; the stage re-read it for ever."""
    deep = b'{"text": "mail ' + EMAIL.encode() + b'", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert EMAIL not in (mask_payload(deep, 16_384) or "")
    assert mask_payload(b"[" * 100_000, 16_384) == "[" * 16_384


def test_a_copy_cut_inside_a_character_keeps_the_characters_before_it() -> None:
    assert mask_payload("é".encode() * 10, 5) == "éé"
    assert mask_payload(b"\xff" * 10, 5) is None
