from __future__ import annotations

import pytest

from streams.score.dedup import RecentIds


def test_remembers_ids_and_forgets_the_oldest_beyond_capacity() -> None:
    ids = RecentIds(3)
    for i in "abc":
        ids.add(i)
    assert "a" in ids and len(ids) == 3
    ids.add("a")  # seen again: becomes the newest
    ids.add("d")
    assert "b" not in ids
    assert all(i in ids for i in "acd") and len(ids) == 3


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity"):
        RecentIds(0)
