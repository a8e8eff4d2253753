"""The history store's PostgreSQL keeps its port across restarts (tonewatch/stack/postgres.py ``cluster_port``):
the DSN a running sink holds must still reach the restarted server."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tonewatch.stack.postgres import cluster_port
from tonewatch.stack.procs import StackError


def _never() -> int:
    raise AssertionError("a restart must not pick a new port")


def test_the_first_start_records_the_port_it_picked_and_a_restart_reuses_it(tmp_path: Path) -> None:
    assert cluster_port(tmp_path, pick=lambda: 54_321, bindable=lambda _port: True) == 54_321
    assert (tmp_path / "port").read_text() == "54321"
    assert (tmp_path / "port").stat().st_mode & 0o077 == 0  # a run file: the owner's alone
    assert cluster_port(tmp_path, pick=_never, bindable=lambda port: port == 54_321) == 54_321


def test_a_recorded_port_another_process_listens_on_is_an_error_not_a_new_port(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        (tmp_path / "port").write_text(str(port))
        with pytest.raises(StackError, match=rf"port {port}, recorded in .*port.*, is taken"):
            cluster_port(tmp_path, pick=_never)
    assert cluster_port(tmp_path, pick=_never) == port  # free again: the same port


@pytest.mark.parametrize("text", ["", "fifty", "0", "70000"])
def test_a_port_file_that_holds_no_port_is_an_error(tmp_path: Path, text: str) -> None:
    (tmp_path / "port").write_text(text)
    with pytest.raises(StackError, match="not a port"):
        cluster_port(tmp_path, pick=_never, bindable=lambda _port: True)
