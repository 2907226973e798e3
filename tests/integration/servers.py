"""A PostgreSQL and a Redis server of a test module's own, on free ports, for tests that stop and
restart them (test_faults): the servers on 5432 and 6379 that every other test shares are never
touched, so those tests may run at the same time.

PostgreSQL refuses to run as root: as root, its commands run as the ``postgres`` user, in a
folder that user owns.
"""

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tests.conftest import unavailable
from tests.factories import free_port, wait_until

DATABASE = "backprop"
STOP_SECONDS = 30


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def postgres_bin() -> Path:
    """The newest PostgreSQL's ``bin`` folder under /usr/lib/postgresql (Debian's layout), or the
    folder of an ``initdb`` on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version_of)
    initdb = found[-1] if found else shutil.which("initdb")
    if initdb is None:
        unavailable("PostgreSQL's initdb", FileNotFoundError("apt-get install postgresql"))
    return Path(initdb).parent


def version_of(initdb: str) -> int:
    return int(Path(initdb).parts[-3])


def as_postgres(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@dataclass
class PostgresServer:
    """A PostgreSQL cluster in ``data``, listening on 127.0.0.1:``port`` alone."""

    bin: Path
    data: Path
    port: int

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of its ``DATABASE``."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def pg_ctl(self, *args: str) -> None:
        """pg_ctl with the server's output to ``data/server.log``: without ``-l`` the server
        would hold our pipe open, and ``subprocess.run`` wait for its end."""
        command = [str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-t", str(STOP_SECONDS)]
        command += ["-l", str(self.data / "server.log")]
        subprocess.run(as_postgres([*command, *args]), check=True, capture_output=True)

    def start(self) -> None:
        self.pg_ctl("start")

    def restart(self) -> None:
        self.pg_ctl("-m", "fast", "restart")

    def stop(self) -> None:
        self.pg_ctl("-m", "immediate", "stop")


def write_settings(data: Path, port: int, settings: str) -> None:
    """No fsync: nothing here has to outlive a crash of the machine; then ``settings`` (lines of
    postgresql.conf, which override those)."""
    with (data / "postgresql.conf").open("a") as conf:
        conf.write(
            f"port = {port}\nlisten_addresses = '127.0.0.1'\n"
            f"unix_socket_directories = '{data}'\nfsync = off\nsynchronous_commit = off\n"
            f"{settings}"
        )


@contextmanager
def postgres_server(settings: str = "") -> Iterator[PostgresServer]:
    """A new cluster with trust authentication and an empty ``DATABASE``, configured with
    ``settings`` (lines of postgresql.conf); deleted afterwards."""
    bin = postgres_bin()
    data = Path(tempfile.mkdtemp(prefix="backprop-postgres-"))
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    initdb = [str(bin / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync"]
    subprocess.run(as_postgres(initdb), check=True, capture_output=True)
    server = PostgresServer(bin, data, free_port())
    write_settings(data, server.port, settings)
    server.start()
    try:
        admin = f"host=127.0.0.1 port={server.port} user=postgres dbname=postgres"
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{DATABASE}"')
        yield server
    finally:
        server.stop()
        shutil.rmtree(data, ignore_errors=True)


@dataclass
class RedisServer:
    """``redis-server`` on 127.0.0.1:``port``, without persistence: a restart loses everything."""

    port: int
    folder: Path
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
        log = (self.folder / "redis.log").open("a")
        self.process = subprocess.Popen(command, cwd=self.folder, stdout=log, stderr=log)
        wait_until(lambda: port_open(self.port), 30, f"Redis to start on {self.port}")

    def stop(self) -> None:
        """``SHUTDOWN NOSAVE``, as an operator would, then wait for the process to exit."""
        subprocess.run(["redis-cli", "-p", str(self.port), "shutdown", "nosave"], check=False)
        try:
            self.process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@contextmanager
def redis_server(folder: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        unavailable("redis-server", FileNotFoundError("apt-get install redis-server"))
    server = RedisServer(free_port(), folder)
    server.start()
    try:
        yield server
    finally:
        if server.process.poll() is None:
            server.stop()
