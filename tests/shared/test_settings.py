"""Settings are read once from the environment, typed, and refuse values a service cannot start with."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from shared.settings import SETTINGS, Setting, Settings, SettingsError, configuration_table, declaration

README = Path(__file__).resolve().parents[2] / "README.md"

WHOLE_NUMBERS = [s for s in SETTINGS if s.is_whole_number]
FRACTIONS = [s for s in SETTINGS if s.is_fractional]


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
            "TICK_BUDGET": "200",
            "TICK_BUCKET_MS": "0",
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
        tick_budget=200,
        tick_bucket_ms=0,
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


def _reasons() -> list[tuple[dict[str, str], str]]:
    """For every declared bound and choice, a value past it and the error that must name it."""
    cases = [({s.env: "many"}, f"{s.env} must be a whole number, got 'many'") for s in WHOLE_NUMBERS]
    for s in WHOLE_NUMBERS:
        if s.minimum is not None:
            cases.append(({s.env: str(s.minimum - 1)}, f"{s.env} must be at least {s.minimum}, got"))
        if s.maximum is not None:
            cases.append(({s.env: str(s.maximum + 1)}, f"{s.env} must be at most {s.maximum}, got"))
    for s in FRACTIONS:
        cases += [
            ({s.env: text}, f"{s.env} must be a number, got {text!r}") for text in ("many", "nan", "inf")
        ]
        if s.above is not None:
            cases.append(({s.env: str(s.above)}, f"{s.env} must be more than {s.above:g}, got"))
    cases += [({s.env: "nonsense"}, f"{s.env} must be ") for s in SETTINGS if s.choices]
    return cases


@pytest.mark.parametrize(("environ", "message"), _reasons(), ids=lambda case: str(case))
def test_every_declared_bound_and_choice_is_enforced_with_its_reason(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env(environ)
    assert str(refused.value).startswith(message)


def test_a_bound_or_a_choice_is_accepted_at_its_edge() -> None:
    for s in WHOLE_NUMBERS:
        for edge in (s.minimum, s.maximum):
            if edge is not None:
                assert s.parse({s.env: str(edge)}) == edge, s.env
    for s in SETTINGS:
        for choice in s.choices:
            assert s.parse({s.env: choice}) == choice, s.env


def test_a_retention_may_be_a_fraction_of_a_day() -> None:
    assert Settings.from_env({"HISTORY_RETENTION_DAYS": "0.01"}).history_retention_days == 0.01
    assert Settings.from_env({"HISTORY_RETENTION_DAYS": "30"}).history_retention_days == 30


def test_an_empty_variable_means_the_default() -> None:
    assert Settings.from_env({s.env: "" for s in SETTINGS}) == Settings.from_env({}) == Settings()


def test_the_log_level_may_be_written_in_any_case() -> None:
    assert Settings.from_env({"LOG_LEVEL": "debug"}).log_level == "DEBUG"


def test_each_setting_has_one_declaration_with_its_own_variable() -> None:
    fields = dataclasses.fields(Settings)
    assert [declaration(f.name) for f in fields] == list(SETTINGS)
    assert len({s.env for s in SETTINGS}) == len(SETTINGS), "two settings read the same variable"
    for f, s in zip(fields, SETTINGS, strict=True):
        assert f.default == s.default, f.name
        assert f.type == type(s.default).__name__, f"{f.name} is declared {f.type}, its default is not"
        assert s.doc and "\n" not in s.doc and not s.doc.endswith("."), f"{s.env}: one line, no full stop"


@pytest.mark.parametrize("declared", SETTINGS, ids=lambda s: s.env)
def test_each_default_is_a_value_the_setting_accepts(declared: Setting) -> None:
    assert declared.parse({declared.env: str(declared.default)}) == declared.default


def test_the_class_documentation_lists_every_setting_from_its_declaration() -> None:
    documentation = Settings.__doc__ or ""
    for f in dataclasses.fields(Settings):
        s = declaration(f.name)
        assert f"{f.name} ({s.env}, {s.shown_default}; {s.accepts}): {s.doc}." in documentation, f.name


def _readme_configuration_table() -> str:
    """The table in the README's "Configuration" section, as written."""
    section = re.search(r"^## Configuration\n(.*?)(?=^## )", README.read_text(), re.S | re.M)
    assert section, "README.md has no Configuration section"
    table = re.search(r"^\|.*?\n(?!\|)", section.group(1), re.S | re.M)
    assert table, "README.md's Configuration section has no table"
    return table.group(0)


def test_the_readme_lists_every_declared_variable_with_its_default() -> None:
    rows = re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \| ([^|]+) \|", _readme_configuration_table(), re.M)
    assert dict(rows) == {s.env: s.shown_default for s in SETTINGS}
    assert len(rows) == len(SETTINGS), "a variable is listed twice"


def test_the_readme_configuration_table_is_the_one_written_from_the_declarations() -> None:
    """Edit the declarations in shared/settings.py, then paste the output of `python -m shared.settings`."""
    assert _readme_configuration_table() == configuration_table()


@pytest.mark.parametrize("value", ["10.0.0.0/33", "10.20.0.0/16,not-a-network", "fe80::/129"])
def test_an_allow_list_that_is_not_networks_is_refused_at_start_naming_the_item(value: str) -> None:
    with pytest.raises(SettingsError, match=r"HTTP_ALLOWED_NETWORKS: '.*' is not a network"):
        Settings.from_env({"HTTP_ALLOWED_NETWORKS": value})


def test_an_allow_list_of_networks_and_bare_addresses_is_accepted() -> None:
    settings = Settings.from_env({"HTTP_ALLOWED_NETWORKS": "10.20.0.0/16, 127.0.0.1 ,fd00::/8"})

    assert settings.http_allowed_networks == "10.20.0.0/16, 127.0.0.1 ,fd00::/8"
