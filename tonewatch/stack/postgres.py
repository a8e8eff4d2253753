"""A real PostgreSQL (Debian's postgresql-15 binaries) as a child process: the history store's database.

One cluster per run folder, initialised once and reused on restart (its password and port are kept beside it, so
its DSN stays the same). It listens on 127.0.0.1 only, with password (SCRAM) authentication, and its Unix socket
inside the cluster folder.
PostgreSQL refuses to run as root: a root caller runs it as the ``postgres`` user, which owns the cluster.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import stat
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tonewatch.stack.procs import (
    StackError,
    free_port,
    log_tail,
    private_dir,
    spawn,
    stop,
    wait_ready,
    write_private,
)

PG_BIN = Path("/usr/lib/postgresql/15/bin")  # Debian's postgresql-15; not on PATH
DATABASE = "tonewatch"
SUPERUSER = "postgres"
RUN_AS = "postgres"  # the OS user a root caller runs the server as
SOCKET_PATH_MAX = 100  # sun_path holds 107 bytes; a longer socket path would stop the server from starting


@dataclass(frozen=True)
class PostgresProcess:
    pid: int
    dsn: str
    log_path: Path
    data_dir: Path


def _bin_dir() -> Path:
    if (PG_BIN / "postgres").is_file():
        return PG_BIN
    found = shutil.which("postgres")
    if found is None:
        raise StackError(f"no PostgreSQL server in {PG_BIN} or on PATH: install Debian's postgresql-15 "
                         "(make system)")
    return Path(found).parent


def _as_server_user(cmd: list[str]) -> list[str]:
    # setpriv execs the server itself, so the pid spawn returns is the postmaster's: procs.stop's SIGTERM
    # reaches it directly (runuser would stay in between and SIGKILL it 2 s after forwarding the signal)
    if os.geteuid() != 0:
        return cmd
    return ["setpriv", f"--reuid={RUN_AS}", f"--regid={RUN_AS}", "--init-groups", "--", *cmd]


def _grant_traverse(path: Path, uid: int) -> None:
    """Let ``uid`` reach ``path``: search (x) permission on each folder above it that lacks it, nothing more
    (no listing, no reading; the run files in them stay 0600). Needed when root's run folder is 0700."""
    for folder in [path, *path.parents]:
        st = folder.stat()
        if st.st_uid != uid and not st.st_mode & stat.S_IXOTH:
            folder.chmod(stat.S_IMODE(st.st_mode) | stat.S_IXOTH)


def _prepare(data_dir: Path) -> tuple[Path, Path]:
    """The cluster and password paths, owned by the server's user; a fresh password if there is none yet."""
    private_dir(data_dir)
    cluster, pwfile = data_dir / "pgdata", data_dir / "password"
    initialised = (cluster / "PG_VERSION").is_file()
    if initialised and not pwfile.is_file():
        raise StackError(f"{cluster} exists but its password file {pwfile} is gone: remove {cluster} to start anew")
    if not pwfile.is_file():
        write_private(pwfile, secrets.token_urlsafe(24))  # URL-safe: goes into the DSN as it is
    cluster.mkdir(mode=0o700, exist_ok=True)
    if os.geteuid() == 0:
        user = pwd.getpwnam(RUN_AS)
        _grant_traverse(data_dir, user.pw_uid)
        for path in (cluster, pwfile):
            os.chown(path, user.pw_uid, user.pw_gid)
    return cluster, pwfile


def _bindable(port: int) -> bool:
    """Whether a server could listen on 127.0.0.1:``port`` now. SO_REUSEADDR, as PostgreSQL's own listener sets:
    a stopped predecessor's connections left in TIME_WAIT do not hold the port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_port(data_dir: Path, pick: Callable[[], int] = free_port,
                 bindable: Callable[[int], bool] = _bindable) -> int:
    """The cluster's port: picked and recorded in ``data_dir`` on the first start, the same on every restart, so
    the DSN its clients hold (a running sink's) reaches it again. A recorded port taken now is an error rather than
    a new port, which those clients would never find."""
    path = data_dir / "port"
    if not path.is_file():
        port = pick()
        write_private(path, str(port))
        return port
    text = path.read_text().strip()
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise StackError(f"postgres: {path} holds {text!r}, not a port: remove it to start on a new port")
    port = int(text)
    if not bindable(port):
        raise StackError(f"postgres: port {port}, recorded in {path} on the cluster's first start, is taken by "
                         f"another process now: free it, or remove {path} to start on a new port (its clients "
                         "then need the new DSN)")
    return port


def _initdb(bin_dir: Path, cluster: Path, pwfile: Path, log_path: Path) -> None:
    if (cluster / "PG_VERSION").is_file():
        return
    cmd = _as_server_user([str(bin_dir / "initdb"), "-D", str(cluster), f"--username={SUPERUSER}",
                           f"--pwfile={pwfile}", "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C"])
    # cwd: the server's user may not read the caller's working directory
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False, cwd=cluster)
    private_dir(log_path.parent)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as log:
        log.write(done.stdout + done.stderr)
    if done.returncode != 0:
        raise StackError(f"initdb failed ({done.returncode}); log {log_path}:\n{log_tail(log_path)}")


def _ensure_database(url: str) -> None:
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{DATABASE}"')


def _connects(url: str) -> bool:
    with psycopg.connect(url, connect_timeout=2):
        return True


def start_postgres(data_dir: Path, timeout_s: float = 60.0) -> PostgresProcess:
    """Initialise the cluster under ``data_dir`` once, start the server on its port, create the database.

    The DSN carries the superuser's password: the store is local, and the cluster is the run's alone.
    """
    bin_dir = _bin_dir()
    data_dir = data_dir.resolve()
    log_path = data_dir / "log" / "postgres.log"  # own folder: spawn makes the log's folder 0700 again
    port = cluster_port(data_dir)  # before _prepare: recording it makes data_dir 0700, _prepare then opens it
    cluster, pwfile = _prepare(data_dir)
    _initdb(bin_dir, cluster, pwfile, log_path)
    password = pwfile.read_text().strip()
    sockets = str(cluster) if len(f"{cluster}/.s.PGSQL.{port}") <= SOCKET_PATH_MAX else ""  # "": TCP only
    pid = spawn(_as_server_user([
        str(bin_dir / "postgres"), "-D", str(cluster), "-c", "listen_addresses=127.0.0.1", "-c", f"port={port}",
        "-c", f"unix_socket_directories={sockets}", "-c", "logging_collector=off",
    ]), log_path, cwd=cluster)
    base = f"postgresql://{SUPERUSER}:{password}@127.0.0.1:{port}"
    wait_ready("postgres", pid, log_path, lambda: _connects(f"{base}/postgres"), timeout_s)
    try:
        _ensure_database(f"{base}/postgres")
    except psycopg.Error as exc:
        stop(pid)
        raise StackError(f"postgres: cannot create database {DATABASE}: {exc}; log {log_path}:\n"
                         f"{log_tail(log_path)}") from exc
    return PostgresProcess(pid, f"{base}/{DATABASE}", log_path, data_dir)
