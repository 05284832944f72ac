"""A private, throwaway PostgreSQL server for the restart scenario: the shared server on 5432
serves other people's tests and must never be restarted. Debian's binaries, a temporary data
directory owned by `postgres` (initdb refuses to run as root), trust auth, a free port."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

BIN = Path(os.environ.get("CHAOS_PG_BIN", "/usr/lib/postgresql/15/bin"))


def free_port(start: int = 5499) -> int:
    for port in range(start, start + 200):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port for a private PostgreSQL")


class PrivateCluster:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="queuectl-chaos-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.running = False

    def _as_postgres(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        # A clean environment: the server must not inherit the run's marker (it would count
        # as a leftover process of the run) nor anything else of ours.
        command = ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else list(args)
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                cwd=self.dir, env={"PATH": os.environ.get("PATH", ""),
                                                   "LANG": "C.UTF-8"})
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])}: {result.stderr.strip()[-500:]}")
        return result

    def __enter__(self) -> PrivateCluster:
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        self._as_postgres(str(BIN / "initdb"), "-D", str(self.data), "-A", "trust",
                          "-U", "postgres", "-E", "UTF8", "--no-sync")
        self.start()
        return self

    def start(self) -> None:
        self._as_postgres(str(BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "log"),
                          "-w", "-t", "60", "-o",
                          f"-p {self.port} -c listen_addresses=127.0.0.1 "
                          f"-k {self.dir}", "start")
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """`immediate` is a crash (no shutdown checkpoint, recovery at the next start);
        `fast` disconnects everyone and shuts down cleanly."""
        self._as_postgres(str(BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60",
                          "stop")
        self.running = False

    def __exit__(self, *exc: object) -> None:
        try:
            if self.running:
                self.stop("immediate")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
