"""COPY text of the store's rows (tonewatch/store/copy_text.py); the round trip through PostgreSQL is in
tests/integration/test_store.py."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tonewatch.store.copy_text import CopyRows, array_literal, copy_field, copy_line


def test_each_field_type() -> None:
    assert copy_field(None) == "\\N"
    assert copy_field("a\tb\nc\rd\\e") == "a\\tb\\nc\\rd\\\\e"
    assert copy_field(datetime(2026, 12, 8, 3, 0, tzinfo=UTC)) == "2026-12-08T03:00:00+00:00"
    assert copy_field(0.25) == "0.25" and copy_field(7) == "7" and copy_field(True) == "t"
    assert copy_field(["AAPL", "Information Technology"]) == '{"AAPL","Information Technology"}'
    assert copy_field([]) == "{}"


def test_array_elements_are_quoted_then_the_field_escaped() -> None:
    assert array_literal(['a"b', "c\\d", "NULL"]) == '{"a\\"b","c\\\\d","NULL"}'
    assert copy_field(['a"b', "c\\d"]) == '{"a\\\\"b","c\\\\\\\\d"}'  # COPY doubles each backslash again


def test_a_type_no_row_holds_is_refused() -> None:
    with pytest.raises(TypeError, match="dict"):
        copy_field({"a": 1})


def test_copy_rows_keep_each_rows_line() -> None:
    rows = CopyRows()
    rows.append(("m1", None, ["T"]))
    rows.append(("m2", 1.5, []))
    assert list(rows) == [("m1", None, ["T"]), ("m2", 1.5, [])]
    assert rows.lines == [copy_line(("m1", None, ["T"])), "m2\t1.5\t{}\n"]
    assert rows.lines[0] == 'm1\t\\N\t{"T"}\n'
