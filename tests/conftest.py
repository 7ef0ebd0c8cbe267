"""Fixtures over the real services: a throwaway PostgreSQL database and RabbitMQ vhost per run, and real
``cronwork`` processes (gunicorn, dramatiq, periodiq) started against them.

Nothing here skips when a service is missing: the run fails and says what to start. Every test that needs a
service is marked ``services`` (see ``needs_services``); ``make test-fast`` runs the others, which need none.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path

import psycopg
import pytest
from cryptography.fernet import Fernet
from dramatiq.brokers.rabbitmq import RabbitmqBroker

import shared.models  # noqa: F401  (declares every table on Base.metadata, which truncate empties)
from shared.db import Base, upgrade_to_head
from shared.runtime import Runtime, build_runtime
from shared.settings import Settings, declaration

ADMIN_DATABASE_URL = os.environ.get(
    "TEST_ADMIN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
RABBITMQ_URL = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672")
OUTPUT_DIR = Path(__file__).resolve().parent.parent / "test-output"
RUN_ID = f"{os.getpid()}_{uuid.uuid4().hex[:6]}"


def wait_for(condition: Callable[[], object], timeout_s: float, what: str, interval_s: float = 0.1) -> object:
    """Poll ``condition`` until it returns something truthy; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(interval_s)


# --- Which tests need the real services ---------------------------------------------------------------------

# The fixtures that reach PostgreSQL, RabbitMQ or start ``cronwork`` processes: a test that asks for one,
# directly or through another fixture, needs the services.
SERVICE_FIXTURES = {"make_database", "make_vhost", "services"}
# A browser against the live system (e2e); helm, kubernetes-validate, docker-compose and wheel builds (deploy);
# servers and processes of its own (chaos).
SERVICE_DIRECTORIES = {"e2e", "deploy", "chaos"}
TESTS_DIR = Path(__file__).resolve().parent


def needs_services(item: pytest.Item) -> bool:
    in_service_directory = TESTS_DIR in item.path.parents and (
        item.path.relative_to(TESTS_DIR).parts[0] in SERVICE_DIRECTORIES
    )
    return in_service_directory or not SERVICE_FIXTURES.isdisjoint(getattr(item, "fixturenames", ()))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``services`` every test that needs more than this process, so that ``make test-fast``
    (``-m "not services"``) runs the rest: the unit tier, on SQLite and Dramatiq's in-memory broker."""
    for item in items:
        if needs_services(item):
            item.add_marker(pytest.mark.services)


# --- PostgreSQL ------------------------------------------------------------------------------------------------


def _admin_connection() -> psycopg.Connection:
    try:
        return psycopg.connect(ADMIN_DATABASE_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at {ADMIN_DATABASE_URL} ({exc}). Start it with: "
            "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
        )


@pytest.fixture(scope="session")
def make_database() -> Iterator[Callable[[str], str]]:
    """Creates migrated throwaway databases; drops them all at the end of the run."""
    created: list[str] = []

    def make(purpose: str) -> str:
        name = f"cronwork_test_{purpose}{len(created)}_{RUN_ID}"
        with _admin_connection() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
            admin.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        url = ADMIN_DATABASE_URL.rsplit("/", 1)[0] + f"/{name}"
        upgrade_to_head(Settings(database_url=url, broker_url="amqp://unused").sqlalchemy_url)
        return url

    yield make
    if not created:
        return
    with _admin_connection() as admin:
        for name in created:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def database_url(make_database: Callable[[str], str]) -> str:
    return make_database("main")


def truncate(url: str) -> None:
    """Empty every table of the schema (Alembic's own aside), ids restarting at 1."""
    tables = ", ".join(Base.metadata.tables)
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")


# --- RabbitMQ ---------------------------------------------------------------------------------------------------


def _rabbitmqctl(*args: str) -> None:
    if shutil.which("rabbitmqctl") is None:
        pytest.fail("rabbitmqctl is not on PATH: the tests create a RabbitMQ vhost per run with it")
    result = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        pytest.fail(
            f"rabbitmqctl {' '.join(args)} failed ({result.stderr.strip()}); is RabbitMQ running? "
            "Start it with: rabbitmq-server -detached"
        )


@pytest.fixture(scope="session")
def make_vhost() -> Iterator[Callable[[str], str]]:
    """Creates throwaway RabbitMQ vhosts (so runs and tests never share queues); deletes them at the end."""
    created: list[str] = []

    def make(purpose: str) -> str:
        name = f"cronwork_test_{purpose}{len(created)}_{RUN_ID}"
        _rabbitmqctl("add_vhost", name)
        _rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        created.append(name)
        return f"{RABBITMQ_URL}/{name}"

    yield make
    for name in created:
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", name], capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def broker_url(make_vhost: Callable[[str], str]) -> str:
    return make_vhost("main")


# --- In-process runtime (API tests, protocol tests) --------------------------------------------------------------


def make_settings(database_url: str, broker_url: str, **overrides: object) -> Settings:
    base = Settings(
        database_url=database_url,
        broker_url=broker_url,
        simulated_work_ms=50,
        demo_task_types="true",  # the tests' schedules run the simulated demo types
        retry_base_delay_ms=200,
        pump_grace_s=5,
    )
    return Settings(**{**base.__dict__, **overrides})


@pytest.fixture
def settings(database_url: str, broker_url: str) -> Settings:
    truncate(database_url)
    return make_settings(database_url, broker_url)


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    broker = RabbitmqBroker(url=settings.broker_url, confirm_delivery=True)
    from shared.messaging import QUEUES

    for queue in QUEUES:
        broker.declare_queue(queue)
    built = build_runtime(settings, broker=broker)
    yield built
    broker.close()


# --- Real processes ---------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def environment(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment a ``cronwork`` process reads its Settings from."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DATABASE_", "BROKER_"))}
    # Every setting by its own variable, so a process runs with exactly the test's settings.
    env.update({declaration(f.name).env: str(getattr(settings, f.name)) for f in fields(Settings)})
    env.update(GUNICORN_WORKERS="1", LOG_LEVEL="INFO", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


@dataclass
class Service:
    """A real ``cronwork ROLE`` process in its own process group, its output in test-output/logs/."""

    role: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout_s: float = 60) -> int:
        """SIGTERM to the launcher only, as Kubernetes does to PID 1 (a graceful drain); SIGKILL after
        ``timeout_s``."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.wait()

    def kill(self) -> None:
        """SIGKILL the whole process group, as a node failure or an OOM kill would."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


@dataclass
class Services:
    log_dir: Path
    started: list[Service] = field(default_factory=list)

    def start(self, role: str, env: dict[str, str], *args: str, cwd: Path | None = None) -> Service:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{role}-{len(self.started)}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "services", role, *args],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=cwd,
            )
        service = Service(role, process, log_path)
        self.started.append(service)
        return service

    def stop_all(self) -> None:
        for service in reversed(self.started):
            service.terminate(timeout_s=30)


@pytest.fixture
def services(request: pytest.FixtureRequest) -> Iterator[Services]:
    started = Services(OUTPUT_DIR / "logs" / request.node.name)
    yield started
    started.stop_all()


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@dataclass(frozen=True)
class LiveSystem:
    base_url: str
    database_url: str
    broker_url: str
    services: Services


@pytest.fixture(scope="module")  # module: its processes must not load the machine during other tests' timing
def live_system(
    make_database: Callable[[str], str], make_vhost: Callable[[str], str]
) -> Iterator[LiveSystem]:
    """The whole system as deployed: gunicorn API, a worker and a beat, on their own database and vhost."""
    settings = Settings(
        database_url=make_database("live"),
        broker_url=make_vhost("live"),
        port=free_port(),
        simulated_work_ms=1500,
        demo_task_types="true",  # the page's tests schedule the simulated demo types
        secret_keys=Fernet.generate_key().decode(),  # so the page can store a secret field's value
        http_allowed_networks="127.0.0.1/32",  # the page's HTTP tasks call servers on this machine
    )
    running = Services(OUTPUT_DIR / "logs" / "live_system")
    env = environment(settings)
    running.start("api", env)
    running.start("worker", env)
    running.start("beat", env)
    base_url = f"http://127.0.0.1:{settings.port}"
    wait_for(lambda: http_ok(f"{base_url}/readyz"), 60, "the live API to become ready")
    yield LiveSystem(base_url, settings.database_url, settings.broker_url, running)
    running.stop_all()
