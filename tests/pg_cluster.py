"""A private PostgreSQL cluster for tests that must stop and restart the server (never the
shared one on port 5432): initdb into a temporary folder owned by the postgres user, serve on
a free port with the socket in that folder, trust authentication."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1:] or [""]
PG_BIN = Path(BIN[0])


def available() -> bool:
    return (PG_BIN / "initdb").is_file() and shutil.which("runuser") is not None and os.geteuid() == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    def __init__(self, folder: Path, port: int) -> None:
        self.folder = folder
        self.port = port
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/test"

    def _as_postgres(self, *args: str, timeout: float = 60) -> None:
        # No pipes: the server would inherit them and keep them open.
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *args],
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=timeout,
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.folder / "server.log")
        self._as_postgres(
            str(PG_BIN / "pg_ctl"), "-D", str(self.folder / "data"), "-l", log, "-o", options, "-w", "start"
        )

    def restart(self) -> None:
        """``pg_ctl restart`` (fast mode: open connections are cut), with the options of start."""
        self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "fast", "-w", "restart")

    def stop(self) -> None:
        self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "fast", "-w", "stop")


@contextmanager
def private_cluster() -> Iterator[Cluster]:
    folder = Path(tempfile.mkdtemp(prefix="tuner-pg-", dir="/tmp"))
    shutil.chown(folder, "postgres")
    cluster = Cluster(folder, _free_port())
    try:
        cluster._as_postgres(str(PG_BIN / "initdb"), "-D", str(folder / "data"), "-A", "trust", "-U", "postgres")
        cluster.start()
        cluster._as_postgres(str(PG_BIN / "createdb"), "-h", str(folder), "-p", str(cluster.port), "test")
        yield cluster
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)
