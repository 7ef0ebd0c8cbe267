"""Settings are read once from the environment, typed, and refuse values a service cannot start with."""

from __future__ import annotations

import pytest

from shared.settings import Settings, SettingsError


def test_nothing_configured_is_the_embedded_mode_on_a_local_sqlite_file() -> None:
    settings = Settings.from_env({})
    assert settings.is_embedded
    assert settings.sqlalchemy_url == "sqlite:///var/cronwork.sqlite3"
    assert (settings.port, settings.auth_mode, settings.tick_horizon_s, settings.pump_grace_s) == (
        8000,
        "dev",
        300,
        60,
    )


@pytest.mark.parametrize("url", ["postgresql://u:p@db:5432/cronwork", "postgres://u:p@db:5432/cronwork"])
def test_a_plain_postgresql_url_is_served_by_psycopg_3(url: str) -> None:
    settings = Settings.from_env({"DATABASE_URL": url, "BROKER_URL": "amqp://guest:guest@mq:5672/%2F"})
    assert settings.sqlalchemy_url == "postgresql+psycopg://u:p@db:5432/cronwork"
    assert not settings.is_embedded


def test_every_variable_is_read() -> None:
    settings = Settings.from_env(
        {
            "DATABASE_URL": "postgresql://db/x",
            "BROKER_URL": "amqp://mq",
            "PORT": "9000",
            "AUTH_MODE": "header",
            "MOCK_USER_EMAIL": "a@b.c",
            "AUTH_HEADER": "X-MS-CLIENT-PRINCIPAL-NAME",
            "TICK_HORIZON_S": "120",
            "PUMP_GRACE_S": "30",
            "SIMULATED_WORK_MS": "5",
            "RETRY_BASE_DELAY_MS": "10",
            "TASK_TIME_LIMIT_S": "60",
            "RUN_LEASE_MARGIN_S": "7",
            "HISTORY_RETENTION_DAYS": "30",
            "WORKER_PROCESSES": "3",
            "WORKER_THREADS": "5",
            "TICK_THREADS": "6",
            "WORKER_TIMEOUT_MS": "50",
            "GUNICORN_WORKERS": "4",
            "HEARTBEAT_DIR": "/run/cw",
            "LOG_LEVEL": "DEBUG",
        }
    )
    assert settings == Settings(
        database_url="postgresql://db/x",
        broker_url="amqp://mq",
        port=9000,
        auth_mode="header",
        mock_user_email="a@b.c",
        auth_header="X-MS-CLIENT-PRINCIPAL-NAME",
        tick_horizon_s=120,
        pump_grace_s=30,
        simulated_work_ms=5,
        retry_base_delay_ms=10,
        task_time_limit_s=60,
        run_lease_margin_s=7,
        history_retention_days=30,
        worker_processes=3,
        worker_threads=5,
        tick_threads=6,
        worker_timeout_ms=50,
        gunicorn_workers=4,
        heartbeat_dir="/run/cw",
        log_level="DEBUG",
    )


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"PORT": "eighty"}, "PORT"),
        ({"TICK_HORIZON_S": "30"}, "TICK_HORIZON_S"),  # shorter than the pump's period
        ({"TICK_HORIZON_S": "1800"}, "TICK_HORIZON_S"),  # RabbitMQ's consumer_timeout
        ({"TASK_TIME_LIMIT_S": "3600"}, "TASK_TIME_LIMIT_S"),
        ({"PUMP_GRACE_S": "1"}, "PUMP_GRACE_S"),
        ({"LOG_LEVEL": "chatty"}, "LOG_LEVEL"),
        ({"AUTH_MODE": "oauth"}, "AUTH_MODE"),
        ({"DATABASE_URL": "postgresql://db/x"}, "BROKER_URL"),
        ({"BROKER_URL": "amqp://mq"}, "DATABASE_URL"),
    ],
)
def test_a_value_the_service_cannot_start_with_is_refused_by_name(
    environ: dict[str, str], named: str
) -> None:
    with pytest.raises(SettingsError, match=named):
        Settings.from_env(environ)
