"""The one error policy for agents: a bad event is dead-lettered with its reason, never fatal.

Every per-event failure becomes a dead-letter record with the reason, the original payload and where it
came from (docs/decisions/2026-12-07-dead-letter-never-fatal.md).
"""

from __future__ import annotations

import base64
import logging
from datetime import UTC, datetime
from typing import Any

from streams.control.rejects import preview
from streams.pii import mask_payload

log = logging.getLogger(__name__)

# A dead-letter record must fit in one Kafka message (1 MB by default) whatever the input: base64
# grows a payload by a third and JSON escapes a control byte to six characters, so a 1 MB input
# would not fit. Longer payloads keep a prefix; the full one stays at topic/partition/offset.
MAX_PAYLOAD_BYTES = 100_000


def dead_letter_record(
    reason: str,
    payload: bytes | str | None,
    *,
    stage: str,
    topic: str | None = None,
    partition: int | None = None,
    offset: int | None = None,
) -> dict[str, Any]:
    """A self-describing record that lets an operator replay or fix the input."""
    record: dict[str, Any] = {
        "reason": reason,
        "stage": stage,
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }
    if payload is not None and len(payload) > MAX_PAYLOAD_BYTES:
        record["payload_truncated"] = True
        record["payload_size"] = len(payload)
        payload = payload[:MAX_PAYLOAD_BYTES]
    if isinstance(payload, bytes):
        try:
            record["payload"] = payload.decode("utf-8")
            record["payload_encoding"] = "utf-8"
        except UnicodeDecodeError:
            record["payload"] = base64.b64encode(payload).decode("ascii")
            record["payload_encoding"] = "base64"
    else:
        record["payload"] = payload
        record["payload_encoding"] = "utf-8"
    log.warning("dead-letter [%s] %s (%s:%s@%s)", stage, preview(reason, 300), topic, partition, offset)
    return record


DEAD_LETTER_COPY_BYTES = 16_384  # of an input record copied into its dead letter; the whole stays at its offset


def input_dead_letter(reason: str, r: Any, stage: str) -> dict[str, Any]:
    """The dead letter of Kafka record ``r`` (topic, partition, offset, key, value): its copy masked of personal
    data and cut to ``DEAD_LETTER_COPY_BYTES``, and said so when cut."""
    try:
        copy = mask_payload(r.value, DEAD_LETTER_COPY_BYTES)
    except Exception:  # a dead letter must never fail its batch: the record is at its offset anyway
        log.exception("masking a dead letter's payload failed; it is sent without one")
        copy = None
    record = dead_letter_record(reason, copy, stage=stage, topic=r.topic, partition=r.partition, offset=r.offset)
    if r.value is not None and len(r.value) > DEAD_LETTER_COPY_BYTES:
        record.update(payload_truncated=True, payload_size=len(r.value))
    return record
