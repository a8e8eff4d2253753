"""Tier markers are checked, not trusted: `make unit` must never start Kafka or Triton."""

from __future__ import annotations

from pathlib import Path

import pytest

INTEGRATION_DIR = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wrong = [item.nodeid for item in items
             if (INTEGRATION_DIR in item.path.parents) != (item.get_closest_marker("integration") is not None)]
    if wrong:
        raise pytest.UsageError("tests under tests/integration (and only those) carry the integration marker: "
                                + ", ".join(wrong[:5]))
