"""A one-off upgrade step: the score stage's group takes the Faust app group's input offsets.

Versions before the score stage read the inputs with a Faust agent in the app's own group; without this
the first worker of a newer version would read every input from the beginning, and the windows agent would
dead-letter that whole history as late.
"""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from tonewatch.core.kafka_io import aiokafka_config
from tonewatch.core.settings import Settings
from tonewatch.core.topics import INPUTS

log = logging.getLogger(__name__)


async def adopt_faust_offsets(settings: Settings) -> None:
    """Commit the Faust group's input offsets for the score group when it has none of its own.

    Run before the stage's consumer joins, as a commit: a seek from the rebalance listener races with a
    fetcher that has already started at the earliest offset.
    """
    conf = aiokafka_config(settings.kafka)
    inputs = {settings.kafka.topic(t) for t in INPUTS}
    admin = AIOKafkaAdminClient(**conf)
    try:
        await admin.start()
        mine = await admin.list_consumer_group_offsets(settings.kafka.score_group_id)
        if any(tp.topic in inputs for tp in mine):
            return
        committed = await admin.list_consumer_group_offsets(settings.kafka.group_id)
        theirs = {tp: meta.offset for tp, meta in committed.items()
                  if tp.topic in inputs and meta.offset >= 0}
    except Exception:  # no answer: the partitions start as configured (earliest), nothing is lost
        log.warning("could not read the consumer groups' input offsets", exc_info=True)
        return
    finally:
        await admin.close()
    if not theirs:
        return
    consumer = AIOKafkaConsumer(**conf, group_id=settings.kafka.score_group_id, enable_auto_commit=False)
    try:
        await consumer.start()
        consumer.assign(list(theirs))
        await consumer.commit(theirs)
        log.info("score stage starts where the Faust group %s left the inputs: %s", settings.kafka.group_id,
                 {f"{tp.topic}:{tp.partition}": o for tp, o in sorted(theirs.items())})
    except Exception:  # e.g. another new worker joined first and adopted them; never fatal
        log.warning("could not adopt the Faust group's input offsets", exc_info=True)
    finally:
        await consumer.stop()
