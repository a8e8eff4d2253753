"""Compose's one-shot Kafka setup, run as the `admin` principal: every topic, then exactly the ACLs of acls.txt.

    python kafka_setup.py acls.txt

Topics are created by the project's own functions, so their configs (compaction) are the ones the services
expect. ACLs the file does not list are removed: the file is the whole truth, and an ACL someone added by
hand does not outlive the next ``docker compose up``. The connection comes from the usual TONEWATCH_KAFKA__*
variables.
"""

from __future__ import annotations

import sys
from pathlib import Path

from kafka.admin import (
    ACL,
    ACLFilter,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    KafkaAdminClient,
    ResourcePattern,
    ResourcePatternFilter,
    ResourceType,
)

from tonewatch.core.errors import ConfigError, ServiceError

RESOURCES = {"topic": ResourceType.TOPIC, "group": ResourceType.GROUP,
             "transactional-id": ResourceType.TRANSACTIONAL_ID}
PATTERNS = {"literal": ACLResourcePatternType.LITERAL, "prefixed": ACLResourcePatternType.PREFIXED}
OPERATIONS = {"Read": ACLOperation.READ, "Write": ACLOperation.WRITE, "Create": ACLOperation.CREATE,
              "Describe": ACLOperation.DESCRIBE}


class AclFileError(ConfigError):
    """A line of acls.txt that does not read as ``principal resource pattern operations names``."""


def parse_acls(text: str) -> set[ACL]:
    """Every ACL a file of ``principal resource pattern Op,Op name,name`` lines allows (``#`` comments)."""
    acls: set[ACL] = set()
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) != 5:
            raise AclFileError(f"line {number}: expected 5 fields, got {len(fields)}: {raw!r}")
        principal, resource, pattern, operations, names = fields
        try:
            patterns = [ResourcePattern(RESOURCES[resource], name, PATTERNS[pattern]) for name in names.split(",")]
            ops = [OPERATIONS[op] for op in operations.split(",")]
        except KeyError as exc:
            raise AclFileError(f"line {number}: unknown {exc.args[0]!r}: {raw!r}") from None
        acls.update(ACL(f"User:{principal}", "*", op, ACLPermissionType.ALLOW, p) for op in ops for p in patterns)
    return acls


def every_acl() -> ACLFilter:
    return ACLFilter(principal=None, host=None, operation=ACLOperation.ANY, permission_type=ACLPermissionType.ANY,
                     resource_pattern=ResourcePatternFilter(ResourceType.ANY, None, ACLResourcePatternType.ANY))


def sync_acls(admin: KafkaAdminClient, desired: set[ACL]) -> tuple[int, int]:
    """Make the broker's ACLs exactly ``desired``; returns (added, removed)."""
    current, error = admin.describe_acls(every_acl())
    if error.errno != 0:
        raise ServiceError(f"cannot list the ACLs: {error}")
    extra = [acl for acl in current if acl not in desired]
    missing = [acl for acl in desired if acl not in set(current)]
    if extra:
        for _, _, err in admin.delete_acls(extra):
            if err.errno != 0:
                raise ServiceError(f"cannot remove an ACL: {err}")
    if missing:
        failed = admin.create_acls(missing)["failed"]
        if failed:
            raise ServiceError(f"cannot add {len(failed)} ACLs, first: {failed[0]}")
    return len(missing), len(extra)


def main(argv: list[str]) -> int:
    from tonewatch.core.kafka_io import client_config, ensure_topics
    from tonewatch.core.settings import Settings
    from tonewatch.core.topics import NAMES
    from tonewatch.notify.ledger import ensure_delivery_topics

    if len(argv) != 1:
        print("usage: kafka_setup.py ACLS_FILE", file=sys.stderr)
        return 2
    desired = parse_acls(Path(argv[0]).read_text())
    settings = Settings()
    ensure_topics(settings.kafka, [settings.kafka.topic(n) for n in NAMES])
    ensure_delivery_topics(settings)
    admin = KafkaAdminClient(**client_config(settings.kafka), client_id="tonewatch-kafka-setup")
    try:
        added, removed = sync_acls(admin, desired)
    finally:
        admin.close()
    print(f"kafka-setup: topics ready; ACLs {len(desired)} (added {added}, removed {removed})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
