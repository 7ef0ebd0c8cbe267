"""Servers of the run's own: a throwaway PostgreSQL cluster and a throwaway RabbitMQ node.

Both live in a temporary folder, listen on free ports of 127.0.0.1 and are removed by ``close``: the machine's
own PostgreSQL and RabbitMQ are never touched, so they may be restarted, killed and purged at will. Run as root,
the servers run as their Debian users (``postgres``, ``rabbitmq``), which own the folders.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from bench.stack import free_port
from shared.messaging import broker_is_reachable
from shared.settings import Settings

POSTGRES_BIN = Path(os.environ.get("CHAOS_POSTGRES_BIN", "/usr/lib/postgresql/15/bin"))
RABBITMQ_SERVER = os.environ.get("CHAOS_RABBITMQ_SERVER", "/usr/lib/rabbitmq/bin/rabbitmq-server")
RABBITMQ_HOME = "/var/lib/rabbitmq"  # the rabbitmq user's home: its Erlang cookie is the one rabbitmqctl uses
STARTUP_TIMEOUT_S = 90


def _as_user(user: str) -> list[str]:
    """Run as ``user`` when we are root (the servers refuse to run as root); as ourselves otherwise."""
    return ["runuser", "-u", user, "--"] if os.geteuid() == 0 else []


def _chown(path: Path, user: str) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, user, user)


@dataclass
class ThrowawayPostgres:
    """A PostgreSQL cluster in ``directory/data``, on ``port``, trusting local connections as ``postgres``.

    ``fsync=off``: the data is thrown away, and the restarts under test are clean (``-m fast``) or crash-like
    (``-m immediate``) without an OS crash, which is what fsync protects against. ``synchronous_commit`` stays
    on: with it off, ``-m immediate`` loses the last commits still in PostgreSQL's WAL buffers (a run's start
    among them, so its attempt runs twice), a loss no production setting allows.
    """

    directory: Path
    port: int

    @classmethod
    def create(cls, parent: Path) -> ThrowawayPostgres:
        directory = parent / "postgres"
        directory.mkdir()
        _chown(directory, "postgres")
        server = cls(directory, free_port())
        server._run(
            "initdb", "-D", str(server.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"
        )
        with open(server.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"\nport = {server.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{directory}'\nfsync = off\n"
                "full_page_writes = off\nmax_connections = 600\nshared_buffers = 128MB\n"
            )
        server.start()
        return server

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, program: str, *args: str) -> None:
        subprocess.run(
            [*_as_user("postgres"), str(POSTGRES_BIN / program), *args],
            check=True,
            capture_output=True,
            timeout=STARTUP_TIMEOUT_S,
            cwd=self.directory,
        )

    def _pg_ctl(self, *args: str) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.directory / "server.log"), "-w", *args)

    def start(self) -> None:
        self._pg_ctl("start")

    def restart(self, mode: str = "fast") -> None:
        """Stop (``fast``: roll back and disconnect; ``immediate``: as a crash, recovery at start) and start."""
        self._pg_ctl("restart", "-m", mode)

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._pg_ctl("stop", "-m", "immediate")


@dataclass
class ThrowawayRabbitmq:
    """A RabbitMQ node named ``cronwork-chaos-<id>@localhost`` with its data, logs and configuration in
    ``directory``; AMQP on ``port``, distribution on ``dist_port``, no plugins (so no management listener
    clashes with the machine's node). ``restart`` stops and starts it on the same data: durable queues and
    persistent messages survive."""

    directory: Path
    node: str
    port: int
    dist_port: int
    process: subprocess.Popen[bytes] | None = None

    @classmethod
    def create(cls, parent: Path, run_id: str) -> ThrowawayRabbitmq:
        directory = parent / "rabbitmq"
        directory.mkdir()
        server = cls(directory, f"cronwork-chaos-{run_id}@localhost", free_port(), free_port())
        (directory / "enabled_plugins").write_text("[].\n")
        # Our own files, so that the machine's (its listener on 5672, its node name) are not read.
        (directory / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{server.port}\nloopback_users = none\n"
        )
        (directory / "rabbitmq-env.conf").write_text("")
        for path in [directory, *directory.iterdir()]:
            _chown(path, "rabbitmq")
        server.start()
        return server

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    def _environment(self) -> dict[str, str]:
        return {
            **{key: value for key, value in os.environ.items() if not key.startswith("RABBITMQ_")},
            "HOME": RABBITMQ_HOME,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.directory / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.directory / "log"),
            "RABBITMQ_PID_FILE": str(self.directory / "node.pid"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.directory / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.directory / "rabbitmq.conf"),
            "RABBITMQ_CONF_ENV_FILE": str(self.directory / "rabbitmq-env.conf"),
        }

    def start(self) -> None:
        """Start the node and wait until it accepts AMQP connections."""
        with open(self.directory / "server.out", "ab") as log:
            self.process = subprocess.Popen(
                [*_as_user("rabbitmq"), RABBITMQ_SERVER],
                env=self._environment(),
                cwd=self.directory,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C must not stop it before the cleanup does
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not self.accepts_connections():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"RabbitMQ node {self.node} did not start: see {self.directory}/log")
            time.sleep(0.3)

    def accepts_connections(self) -> bool:
        return broker_is_reachable(Settings(broker_url=self.url))

    def ctl(self, *args: str, timeout_s: float = 60) -> str:
        """``rabbitmqctl -n NODE args``: the output, or CalledProcessError."""
        return subprocess.run(
            ["rabbitmqctl", "-q", "-n", self.node, *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        ).stdout

    def stop(self) -> None:
        """Stop the node (its connections close), keeping its data; killed if it will not stop."""
        try:
            self.ctl("stop", timeout_s=60)
        except (subprocess.SubprocessError, OSError):
            self._kill()
        if self.process is not None:
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self._kill()
            self.process = None

    def restart(self, down_s: float) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()

    def _kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        pid_file = self.directory / "node.pid"
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)

    def close(self) -> None:
        if self.process is not None:
            self.stop()
