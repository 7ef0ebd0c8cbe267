"""`docker compose up` brings the whole stack up in order from one image, and the image is small, non-root and
health-checked. There is no Docker engine in CI: the compose file is checked through `docker-compose config`,
the Dockerfile by reading it, and the image's health check script by running it against stand-ins."""

from __future__ import annotations

import dataclasses
import http.server
import os
import re
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.settings import SETTINGS, Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
APP_SERVICES = ("migrate", "api", "worker", "beat")
LONG_RUNNING = ("postgres", "rabbitmq", "api", "worker", "beat")


def seconds(duration: str) -> float:
    """A Compose duration such as "5m30s" or "330s" in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"not a duration: {duration!r}"
    return sum(float(n) * units[u] for n, u in parts)


# --- docker-compose.yml ----------------------------------------------------------------------------------


def test_compose_file_defines_the_whole_stack(compose_config):
    assert set(compose_config["services"]) == {"postgres", "rabbitmq", *APP_SERVICES}


def test_app_services_share_one_image_and_pick_their_role_by_command(compose_config):
    services = compose_config["services"]
    assert len({services[name]["image"] for name in APP_SERVICES}) == 1
    for name in APP_SERVICES:
        assert services[name]["command"] == [name]
        assert services[name]["build"]["context"] == str(REPO_ROOT)


def test_stack_comes_up_in_order(compose_config):
    services = compose_config["services"]
    healthy = {"condition": "service_healthy"}
    assert services["migrate"]["depends_on"] == {"postgres": healthy, "rabbitmq": healthy}
    for name in ("api", "worker", "beat"):
        assert services[name]["depends_on"] == {
            "postgres": healthy,
            "rabbitmq": healthy,
            "migrate": {"condition": "service_completed_successfully"},
        }, name


def test_migrate_is_a_one_shot_service(compose_config):
    migrate = compose_config["services"]["migrate"]
    assert migrate["restart"] == "no"
    # The image's health check does not apply to it (Compose v1 writes "disable" as test NONE).
    assert migrate["healthcheck"] in ({"disable": True}, {"test": ["NONE"]})


def test_every_long_running_service_has_a_health_check(compose_config):
    services = compose_config["services"]
    for name in LONG_RUNNING:
        assert services[name]["healthcheck"]["test"][0] == "CMD", name
    assert services["worker"]["healthcheck"]["test"] == ["CMD", "cronwork", "probe", "worker"]
    assert services["beat"]["healthcheck"]["test"] == ["CMD", "cronwork", "probe", "beat"]


def test_app_services_get_the_database_and_broker_urls(compose_config):
    for name in APP_SERVICES:
        env = compose_config["services"][name]["environment"]
        assert env["DATABASE_URL"].startswith("postgresql://") and "@postgres:5432/" in env["DATABASE_URL"]
        assert env["BROKER_URL"].startswith("amqp://") and "@rabbitmq:5672/" in env["BROKER_URL"]


def test_app_services_get_every_setting_with_the_services_defaults(compose_config):
    """Every variable Settings.from_env reads is passed (so a .env file can set it), nothing else is (a name the
    services do not declare would be ignored silently), and the file's defaults are the services' own: a default
    changed in shared/settings.py must be changed here too. Only LOG_FORMAT differs on purpose: containers log
    JSON, for a log pipeline."""
    for name in APP_SERVICES:
        env = {key: str(value) for key, value in compose_config["services"][name]["environment"].items()}
        assert env.keys() == {s.env for s in SETTINGS}, name
        parsed = Settings.from_env(env)  # raises SettingsError, naming the variable, if a default is refused
        assert parsed.log_format == "json"
        local = dataclasses.replace(parsed, database_url="", broker_url="", log_format="text")
        assert local == Settings.from_env({}), name


def test_a_setting_is_set_from_the_shell_or_env_file_by_its_own_name():
    """``TICK_BUDGET: ${TICK_BUDGET:-10000}``, never another name: the README tells users to set the setting's
    variable, and a misspelt one would leave the default in force without a word."""
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    environment = compose["x-cronwork"]["environment"]
    from_shell = {
        key: match.group(1)
        for key, value in environment.items()
        if (match := re.fullmatch(r"\$\{(\w+)(?::?-[^}]*)?\}", str(value)))
    }
    assert from_shell, "the pattern no longer matches the file"
    assert {key: variable for key, variable in from_shell.items() if key != variable} == {}


def test_worker_can_be_scaled(compose_config):
    """`--scale worker=N` needs no fixed container name and no published host port."""
    for name in ("worker", "beat"):
        service = compose_config["services"][name]
        assert "container_name" not in service, name
        assert "ports" not in service, name


def test_worker_stop_grace_period_outlasts_the_task_time_limit(compose_config):
    worker = compose_config["services"]["worker"]
    assert seconds(worker["stop_grace_period"]) > int(worker["environment"]["TASK_TIME_LIMIT_S"])


def test_app_containers_run_read_only_with_a_writable_tmp(compose_config):
    for name in APP_SERVICES:
        service = compose_config["services"][name]
        assert service["read_only"] is True, name
        assert "/tmp" in service["tmpfs"], name
        assert service["cap_drop"] == ["ALL"], name


def test_database_and_broker_data_live_on_named_volumes(compose_config):
    assert {"postgres-data", "rabbitmq-data"} <= set(compose_config["volumes"])
    postgres_mounts = compose_config["services"]["postgres"]["volumes"]
    assert any(
        str(m).startswith("postgres-data:/var/lib/postgresql/data")
        or (isinstance(m, dict) and m.get("source") == "postgres-data")
        for m in postgres_mounts
    )


def _published(port: str | dict[str, Any]) -> tuple[str, int]:
    """(host address, container port) of a port mapping, in either form `docker-compose config` writes."""
    if isinstance(port, dict):
        return port.get("host_ip", "0.0.0.0"), int(port["target"])
    *host, target = port.split("/")[0].split(":")
    return (host[0] if len(host) == 2 else "0.0.0.0"), int(target)


def test_api_and_rabbitmq_management_ui_are_published_on_this_machine_only(compose_config):
    services = compose_config["services"]
    published = {
        name: [_published(p) for p in services[name]["ports"]]
        for name in services
        if "ports" in services[name]
    }
    assert published == {"api": [("127.0.0.1", 8000)], "rabbitmq": [("127.0.0.1", 15672)]}


# --- Dockerfile ------------------------------------------------------------------------------------------


def _stages() -> list[list[str]]:
    """The Dockerfile's build stages, each a list of instructions (continuation lines joined)."""
    text = (REPO_ROOT / "Dockerfile").read_text()
    text = re.sub(
        r"<<'EOF'.*?^EOF$", "<<'EOF'", text, flags=re.S | re.M
    )  # heredoc bodies are not instructions
    instructions = [
        line for line in re.sub(r"\\\n", " ", text).splitlines() if line and not line.startswith("#")
    ]
    stages: list[list[str]] = []
    for instruction in instructions:
        if instruction.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def test_image_is_multi_stage_on_a_slim_python_base():
    stages = _stages()
    assert len(stages) >= 2
    text = (REPO_ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim", text, re.M)
    assert stages[-1][0].startswith("FROM ${PYTHON_IMAGE} AS runtime")
    assert any("COPY --from=builder /opt/venv /opt/venv" in i for i in stages[-1])


def test_final_stage_has_no_compilers_and_runs_as_a_numeric_non_root_user():
    final = _stages()[-1]
    assert not any(re.search(r"build-essential|\bgcc\b|\bg\+\+|\bmake\b|-dev\b", i) for i in final), final
    [user] = [i for i in final if i.startswith("USER ")]
    uid = user.split()[1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0


def test_role_is_chosen_by_the_command_and_the_api_is_health_checked():
    final = _stages()[-1]
    assert 'ENTRYPOINT ["/usr/bin/tini", "--", "cronwork"]' in final
    assert 'CMD ["api"]' in final
    assert any(i.startswith("HEALTHCHECK ") and "cronwork-healthcheck" in i for i in final)


def test_build_context_leaves_local_state_out():
    rules = [r for r in (REPO_ROOT / ".dockerignore").read_text().splitlines() if r and not r.startswith("#")]
    assert rules[0] == "*", "the .dockerignore is an allowlist"
    assert {"!pyproject.toml", "!shared/", "!services/"} <= set(rules)


@pytest.fixture
def healthcheck(tmp_path: Path):
    """The image's health check script, run against a fake PID 1 command line and a stand-in `cronwork`."""
    script = re.search(
        r"<<'EOF' /usr/local/bin/cronwork-healthcheck\n(.*?)^EOF$",
        (REPO_ROOT / "Dockerfile").read_text(),
        re.S | re.M,
    ).group(1)
    cmdline = tmp_path / "cmdline"
    (tmp_path / "healthcheck").write_text(script.replace("/proc/1/cmdline", str(cmdline)))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_cronwork = bin_dir / "cronwork"
    fake_cronwork.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/probed\n[ "$2" != broken ]\n')
    fake_cronwork.chmod(fake_cronwork.stat().st_mode | stat.S_IEXEC)
    (bin_dir / "python").symlink_to(sys.executable)  # the image's venv python

    def run(*pid1_argv: str, port: int = 8000) -> tuple[int, str]:
        cmdline.write_bytes(b"\0".join(a.encode() for a in pid1_argv) + b"\0")
        (tmp_path / "probed").unlink(missing_ok=True)
        env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "PORT": str(port)}
        result = subprocess.run(
            ["sh", str(tmp_path / "healthcheck")],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        probed = tmp_path / "probed"
        return result.returncode, probed.read_text().strip() if probed.exists() else ""

    return run


@pytest.mark.parametrize("role", ["worker", "beat"])
def test_image_health_check_probes_worker_and_beat_with_cronwork_probe(healthcheck, role):
    assert healthcheck("/usr/bin/tini", "--", "cronwork", role) == (0, f"probe {role}")
    assert healthcheck("/usr/bin/tini", "--", "cronwork", "broken")[1] == ""  # unknown role: nothing probed


def test_image_health_check_passes_for_one_shot_commands(healthcheck):
    assert healthcheck("/usr/bin/tini", "--", "cronwork", "migrate") == (0, "")


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (500, False)])
def test_image_health_check_asks_the_api_for_healthz(healthcheck, status, healthy):
    handler = type("Health", (_Health,), {"status": status})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        code, _ = healthcheck("/usr/bin/tini", "--", "cronwork", "api", port=server.server_port)
    finally:
        server.shutdown()
    assert (code == 0) is healthy
