"""Schedules as code: ``cronwork apply -f FILE`` makes a file's schedules so by their stable keys, idempotently,
with ``--dry-run`` and ``--prune``; ``cronwork export`` writes the same format; ``cronwork rotate-secrets``
re-encrypts stored secrets. Each command runs as the real ``cronwork`` process against the test's PostgreSQL
database and RabbitMQ vhost."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from cryptography.fernet import Fernet
from flask.testing import FlaskClient
from sqlalchemy import select

from shared.models import TaskSchedule
from shared.runtime import Runtime
from shared.secrets import reveal_secrets
from shared.settings import Settings
from shared.task_types import installed_task_types
from tests.api.conftest import TASKS, cron_task, interval_task
from tests.conftest import environment

CRONWORK = Path(sys.executable).parent / "cronwork"
SECRET = "hunter2-signing-key"


def nightly(**overrides: Any) -> dict[str, Any]:
    return {
        "key": "nightly-export",
        **cron_task(name="Nightly export", cronExpression="0 2 * * *"),
        **overrides,
    }


def every_minute(**overrides: Any) -> dict[str, Any]:
    return {"key": "minutely", **interval_task(), **overrides}


def signed(**overrides: Any) -> dict[str, Any]:
    """An entry of the example plugin's type, whose ``signature`` is a secret field."""
    body = {
        "key": "signed-lines",
        "name": "Append a signed line",
        "taskType": "example_append_line",
        "scheduleType": "manual",
        "config": {"path": "/tmp/lines.txt", "signature": SECRET},
    }
    return {**body, **overrides}


@dataclass
class Cronwork:
    """Runs ``cronwork`` commands as real processes, with the test's settings, in a working directory of files."""

    settings: Settings
    workdir: Path

    def write(self, name: str, *entries: dict[str, Any], **document: Any) -> Path:
        path = self.workdir / name
        path.write_text(yaml.safe_dump({**document, "schedules": list(entries)}, sort_keys=False))
        return path

    def __call__(self, *args: str | Path, secret_keys: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(CRONWORK), *map(str, args)],
            env=environment(self.settings, SECRET_KEYS=secret_keys),
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def ok(self, *args: str | Path, secret_keys: str = "") -> str:
        result = self(*args, secret_keys=secret_keys)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout


@pytest.fixture
def cronwork(settings: Settings, tmp_path: Path) -> Cronwork:
    return Cronwork(settings, tmp_path)


@pytest.fixture
def stored(runtime: Runtime) -> Callable[..., dict[str, TaskSchedule]]:
    """The schedules as stored, by source key (``source``: only that source's)."""

    def read(source: str | None = None) -> dict[str, TaskSchedule]:
        with runtime.sessions() as session:
            query = select(TaskSchedule).order_by(TaskSchedule.id)
            if source is not None:
                query = query.where(TaskSchedule.source == source)
            return {schedule.source_key or f"#{schedule.id}": schedule for schedule in session.scalars(query)}

    return read


def state(schedule: TaskSchedule) -> tuple[Any, ...]:
    """What an edit, or a re-arm, changes."""
    return (schedule.version, schedule.dedupe_key, schedule.next_run_at, schedule.updated_at, schedule.config)


# --- Apply ----------------------------------------------------------------------------------------------------


def test_apply_creates_each_entry_under_the_files_source_and_key(cronwork, stored):
    path = cronwork.write("reports.yaml", nightly(), every_minute())

    out = cronwork.ok("apply", "-f", path)

    assert out.splitlines()[0] == "source 'reports': 2 to create, 0 to update, 0 unchanged, 0 to delete"
    assert "+ nightly-export\n" in out and '    cronExpression: "0 2 * * *"\n' in out
    assert out.rstrip().endswith("applied 2 changes")
    schedules = stored("reports")
    assert list(schedules) == ["nightly-export", "minutely"]
    export, minutely = schedules.values()
    assert (export.name, export.cron_expression, export.timezone) == (
        "Nightly export",
        "0 2 * * *",
        "Europe/Berlin",
    )
    assert {s.created_by for s in schedules.values()} == {"apply:reports"}
    assert all(s.version == 1 and s.next_run_at is not None for s in schedules.values())
    # Published after the commit, as an API create is: the minutely slot is within the horizon.
    assert minutely.tick_published_at is not None


def test_a_second_apply_changes_nothing(cronwork, stored):
    path = cronwork.write("reports.yaml", nightly(), every_minute(labels={"team": "billing"}, owner="ops"))
    cronwork.ok("apply", "-f", path)
    before = {key: state(schedule) for key, schedule in stored().items()}

    out = cronwork.ok("apply", "-f", path)

    assert out.splitlines() == [
        "source 'reports': 0 to create, 0 to update, 2 unchanged, 0 to delete",
        "nothing to change",
    ]
    assert {key: state(schedule) for key, schedule in stored().items()} == before


def test_a_rename_updates_only_that_schedule_and_leaves_its_tick_alone(cronwork, stored):
    cronwork.ok("apply", "-f", cronwork.write("reports.yaml", nightly(), every_minute()))
    before = stored()

    out = cronwork.ok(
        "apply", "-f", cronwork.write("reports.yaml", nightly(name="Nightly CSV export"), every_minute())
    )

    assert f"~ nightly-export (id {before['nightly-export'].id})\n" in out
    assert '    name: "Nightly export" -> "Nightly CSV export"\n' in out
    after = stored()
    renamed = after["nightly-export"]
    assert (renamed.name, renamed.version) == ("Nightly CSV export", 2)
    assert (renamed.dedupe_key, renamed.next_run_at) == (
        before["nightly-export"].dedupe_key,
        before["nightly-export"].next_run_at,
    )
    assert state(after["minutely"]) == state(before["minutely"])


def test_a_cron_change_rearms_only_that_schedule(cronwork, stored):
    cronwork.ok("apply", "-f", cronwork.write("reports.yaml", nightly(), every_minute()))
    before = stored()

    out = cronwork.ok(
        "apply", "-f", cronwork.write("reports.yaml", nightly(cronExpression="0 3 * * *"), every_minute())
    )

    assert '    cronExpression: "0 2 * * *" -> "0 3 * * *"\n' in out
    after = stored()
    rearmed = after["nightly-export"]
    assert rearmed.version == 2
    assert rearmed.dedupe_key != before["nightly-export"].dedupe_key
    assert rearmed.next_run_at.astimezone(ZoneInfo("Europe/Berlin")).hour == 3
    assert state(after["minutely"]) == state(before["minutely"])


def test_bounds_written_as_yaml_timestamps_apply_show_in_the_plan_and_round_trip(cronwork, stored):
    start = datetime(2031, 3, 5, 9, 30, tzinfo=UTC)
    # Unquoted, YAML reads a timestamp as a datetime; quoted, it is text: both are ISO 8601.
    path = cronwork.write("reports.yaml", every_minute(startAt=start, endAt="2031-12-31T00:00:00.250Z"))

    out = cronwork.ok("apply", "-f", path)

    assert '    startAt: "2031-03-05T09:30:00Z"\n' in out
    assert '    endAt: "2031-12-31T00:00:00.250Z"\n' in out
    minutely = stored()["minutely"]
    assert (minutely.start_at, minutely.next_run_at) == (start, start)
    out = cronwork.ok("apply", "-f", cronwork.write("reports.yaml", every_minute(startAt=start)))
    assert '    endAt: "2031-12-31T00:00:00.250Z" -> null\n' in out
    before = {key: state(schedule) for key, schedule in stored().items()}
    cronwork.ok("export", "--source", "reports", "-o", "exported.yaml")

    exported = yaml.safe_load((cronwork.workdir / "exported.yaml").read_text())
    assert exported["schedules"][0]["startAt"] == "2031-03-05T09:30:00.000Z"
    assert cronwork.ok("apply", "-f", "exported.yaml").splitlines()[-1] == "nothing to change"
    assert {key: state(schedule) for key, schedule in stored().items()} == before


def test_a_field_left_out_takes_its_default_again(cronwork, stored):
    """The file states the whole schedule: a pause made elsewhere is undone by the next apply."""
    path = cronwork.write("reports.yaml", every_minute())
    cronwork.ok("apply", "-f", path)
    cronwork.ok("apply", "-f", cronwork.write("paused.yaml", every_minute(enabled=False), source="reports"))
    assert stored()["minutely"].next_run_at is None

    out = cronwork.ok("apply", "-f", path)

    assert "    enabled: false -> true\n" in out
    resumed = stored()["minutely"]
    assert (resumed.enabled, resumed.version) == (True, 3)
    assert resumed.next_run_at is not None


def test_dry_run_prints_the_diff_and_changes_nothing(cronwork, stored):
    cronwork.ok("apply", "-f", cronwork.write("reports.yaml", nightly(), every_minute()))
    before = {key: state(schedule) for key, schedule in stored().items()}
    path = cronwork.write(
        "reports.yaml", nightly(cronExpression="0 3 * * *"), {**every_minute(), "key": "every-minute"}
    )

    out = cronwork.ok("apply", "-f", path, "--dry-run", "--prune")

    assert out.splitlines() == [
        "source 'reports': 1 to create, 1 to update, 0 unchanged, 1 to delete",
        f"~ nightly-export (id {stored()['nightly-export'].id})",
        '    cronExpression: "0 2 * * *" -> "0 3 * * *"',
        "+ every-minute",
        '    name: "Export every minute"',
        '    taskType: "data_export"',
        '    scheduleType: "interval"',
        "    intervalMs: 60000",
        '    config.format: "csv"',
        f"- minutely (id {stored()['minutely'].id}: Export every minute)",
        "dry run: nothing applied",
    ]
    assert {key: state(schedule) for key, schedule in stored().items()} == before


def test_prune_removes_only_that_sources_schedules_the_file_leaves_out(cronwork, stored, create):
    cronwork.ok("apply", "-f", cronwork.write("reports.yaml", nightly(), every_minute()))
    cronwork.ok("apply", "-f", cronwork.write("billing.yaml", nightly()))
    made_in_the_page = create(cron_task())
    path = cronwork.write("reports.yaml", nightly())

    kept = cronwork.ok("apply", "-f", path)
    assert (
        f"? minutely (id {stored()['minutely'].id}: Export every minute): not in the file, kept (--prune deletes it)"
        in kept
    )
    assert "minutely" in stored("reports")

    pruned = cronwork.ok("apply", "-f", path, "--prune")

    assert "0 to create, 0 to update, 1 unchanged, 1 to delete" in pruned
    assert list(stored("reports")) == ["nightly-export"]
    assert list(stored("billing")) == ["nightly-export"]
    assert f"#{made_in_the_page['id']}" in stored()


def test_an_empty_list_with_prune_deletes_every_schedule_of_the_source(cronwork, stored):
    cronwork.ok("apply", "-f", cronwork.write("reports.yaml", nightly(), every_minute()))

    cronwork.ok("apply", "-f", cronwork.write("reports.yaml"), "--prune")

    assert stored("reports") == {}


def test_the_source_is_the_files_own_else_the_option_else_the_files_name(cronwork, stored):
    cronwork.ok("apply", "-f", cronwork.write("one.yaml", nightly(), source="named"))
    cronwork.ok("apply", "-f", cronwork.write("two.yaml", nightly()), "--source", "chosen")
    cronwork.ok("apply", "-f", cronwork.write("three.yaml", nightly()))
    assert [list(stored(source)) for source in ("named", "chosen", "three")] == [["nightly-export"]] * 3

    # A file is never applied, nor pruned, as another source than the one it names.
    refused = cronwork(
        "apply", "-f", cronwork.write("one.yaml", source="named"), "--source", "other", "--prune"
    )
    assert refused.returncode == 1
    assert "source: the file names source 'named', --source says 'other'" in refused.stderr
    assert list(stored("named")) == ["nightly-export"]


# --- A bad file applies nothing ---------------------------------------------------------------------------------


def test_a_bad_entry_applies_nothing_and_names_the_entry_and_the_field(cronwork, stored):
    cronwork.ok("apply", "-f", cronwork.write("reports.yaml", nightly()))
    before = {key: state(schedule) for key, schedule in stored().items()}
    path = cronwork.write(
        "reports.yaml",
        nightly(name="Renamed"),
        every_minute(),
        {**nightly(cronExpression="0 25 * * *"), "key": "broken-hour"},
    )

    result = cronwork("apply", "-f", path)

    assert result.returncode == 1
    # The plan is printed either way; the errors name the entry by its key and the field by its wire name.
    assert "+ minutely" in result.stdout and "! " not in result.stdout
    assert result.stderr.splitlines()[0] == "invalid file: nothing applied"
    assert "schedules[broken-hour].cronExpression: " in result.stderr
    assert {key: state(schedule) for key, schedule in stored().items()} == before


BAD_ENTRIES = {
    "interval-as-text": (every_minute(intervalMs="60000"), "schedules[minutely].intervalMs", "intervalMs"),
    "unknown-field": (every_minute(colour="red"), "schedules[minutely].colour", "colour"),
    "hour-out-of-range": (
        nightly(cronExpression="0 25 * * *"),
        "schedules[nightly-export].cronExpression",
        "cronExpression",
    ),
    "unknown-timezone": (nightly(timezone="Mars/Olympus"), "schedules[nightly-export].timezone", "timezone"),
    "interval-beside-cron": (
        nightly(intervalMs=60_000),
        "schedules[nightly-export].intervalMs",
        "intervalMs",
    ),
    "bad-label": (every_minute(labels={"-team": "x"}), "schedules[minutely].labels.-team", "labels.-team"),
    "unknown-task-type": (every_minute(taskType="nope"), "schedules[minutely].taskType", "taskType"),
    "bad-config": (
        nightly(config={"reportId": "nope"}),
        "schedules[nightly-export].config.reportId",
        "config.reportId",
    ),
}


@pytest.mark.parametrize(("entry", "path", "wire_field"), BAD_ENTRIES.values(), ids=BAD_ENTRIES)
def test_an_entry_is_refused_with_the_apis_own_reason(
    cronwork, stored, client: FlaskClient, entry, path, wire_field
):
    """The file is read through the API's schema and checked by the domain's rules: the same words as a 422."""
    body = {name: value for name, value in entry.items() if name != "key"}
    api_reasons = client.post(TASKS, json=body).get_json()["errors"]["json"]
    assert wire_field in api_reasons, api_reasons

    result = cronwork("apply", "-f", cronwork.write("reports.yaml", entry))

    assert result.returncode == 1
    assert [f"{path}: {reason}" for reason in api_reasons[wire_field]] == [
        line for line in result.stderr.splitlines() if line.startswith(f"{path}: ")
    ]
    assert stored() == {}


def test_entries_without_a_usable_key_are_named_by_their_position(cronwork, stored):
    entries = [
        nightly(),
        {k: v for k, v in every_minute().items() if k != "key"},
        nightly(),
        {**every_minute(), "key": 7},
    ]

    result = cronwork("apply", "-f", cronwork.write("reports.yaml", *entries))

    assert result.returncode == 1
    assert "schedules[1].key: missing: every entry has a stable key" in result.stderr
    assert "schedules[2].key: repeats the key of schedules[0]: keys are unique in a file" in result.stderr
    assert (
        "schedules[3].key: must be text, not blank, without spaces around it (quote a number)"
        in result.stderr
    )
    assert stored() == {}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("schedules: [\n", "file: is not YAML"),
        ("- key: a\n", "file: must be a mapping with a 'schedules' list"),
        ("source: reports\n", "schedules: missing"),
        ("schedules: {}\n", "schedules: must be a list"),
        ("schedules: []\nschedule_defaults: {}\n", "schedule_defaults: unknown field"),
    ],
)
def test_a_malformed_file_is_refused_saying_why(cronwork, text, reason):
    path = cronwork.workdir / "reports.yaml"
    path.write_text(text)

    result = cronwork("apply", "-f", path)

    assert result.returncode == 1
    assert reason in result.stderr


# --- Export -----------------------------------------------------------------------------------------------------


def test_export_then_apply_round_trips_with_no_changes(cronwork, stored):
    cronwork.ok(
        "apply",
        "-f",
        cronwork.write(
            "reports.yaml",
            nightly(owner="ops", maxAttempts=2, labels={"team": "billing"}),
            every_minute(enabled=False, timeLimitS=60, retryBaseDelayMs=0),
        ),
    )
    cronwork.ok("apply", "-f", cronwork.write("billing.yaml", nightly(key="billing-nightly")))
    before = {key: state(schedule) for key, schedule in stored().items()}

    cronwork.ok("export", "--source", "reports", "-o", "exported.yaml")

    exported = yaml.safe_load((cronwork.workdir / "exported.yaml").read_text())
    assert exported["source"] == "reports"
    assert [entry["key"] for entry in exported["schedules"]] == ["nightly-export", "minutely"]
    assert exported["schedules"][1] == {
        "key": "minutely",
        "name": "Export every minute",
        "taskType": "data_export",
        "scheduleType": "interval",
        "intervalMs": 60000,
        "enabled": False,
        "config": {"format": "csv"},
        "timeLimitS": 60,
        "retryBaseDelayMs": 0,
    }
    out = cronwork.ok("apply", "-f", "exported.yaml", "--prune")
    assert out.splitlines()[-1] == "nothing to change"
    assert {key: state(schedule) for key, schedule in stored().items()} == before


def test_export_without_a_source_writes_every_schedule(cronwork, create):
    cronwork.ok("apply", "-f", cronwork.write("reports.yaml", nightly()))
    made_in_the_page = create(interval_task(name="Made in the page"))

    result = cronwork("export")

    assert result.returncode == 0, result.stderr
    document = yaml.safe_load(result.stdout)
    assert "source" not in document  # two sources (one of them none): the file names none
    assert [entry["key"] for entry in document["schedules"]] == [
        "nightly-export",
        f"made-in-the-page-{made_in_the_page['id']}",
    ]
    assert "applying this file creates them anew under its source" in result.stderr


# --- Secrets ----------------------------------------------------------------------------------------------------


def test_a_secret_is_stored_encrypted_never_shown_and_a_file_is_warned_off_plain_values(cronwork, stored):
    keys = Fernet.generate_key().decode()
    path = cronwork.write("signing.yaml", signed())

    refused = cronwork("apply", "-f", path)  # no SECRET_KEYS: a plain value cannot be stored
    assert refused.returncode == 1
    assert "schedules[signed-lines].config.signature: cannot be stored: set SECRET_KEYS" in refused.stderr

    applied = cronwork("apply", "-f", path, secret_keys=keys)
    again = cronwork("apply", "-f", path, secret_keys=keys)
    exported = cronwork("export", "--source", "signing", secret_keys=keys)

    assert applied.returncode == 0, applied.stderr
    assert "schedules[signed-lines].config.signature: a secret written in the file" in applied.stderr
    assert "    config.signature: (secret)\n" in applied.stdout
    assert again.stdout.splitlines()[-1] == "nothing to change"  # the same value, already stored
    schedule = stored()["signed-lines"]
    assert set(schedule.config["signature"]) == {"encrypted"} and schedule.version == 1
    assert yaml.safe_load(exported.stdout)["schedules"][0]["config"]["signature"] == {"set": True}
    for output in (refused, applied, again, exported):
        assert SECRET not in output.stdout + output.stderr


def test_a_secret_by_reference_round_trips_and_a_changed_secret_updates(cronwork, stored):
    keys = Fernet.generate_key().decode()
    reference = signed(config={"path": "/tmp/lines.txt", "signature": {"env": "SIGNING_KEY"}})
    cronwork.ok("apply", "-f", cronwork.write("signing.yaml", reference))
    assert stored()["signed-lines"].config["signature"] == {"env": "SIGNING_KEY"}
    assert cronwork.ok("export", "--source", "signing").count("env: SIGNING_KEY") == 1

    out = cronwork.ok("apply", "-f", cronwork.write("signing.yaml", signed()), secret_keys=keys)

    assert '    config.signature: {"env": "SIGNING_KEY"} -> (secret)\n' in out
    assert set(stored()["signed-lines"].config["signature"]) == {"encrypted"}


def test_rotate_secrets_re_encrypts_under_the_first_key_once(cronwork, stored, runtime):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    cronwork.ok(
        "apply",
        "-f",
        cronwork.write(
            "signing.yaml",
            signed(),
            signed(key="by-reference", config={"path": "/tmp/x", "signature": {"file": "/run/key"}}),
        ),
        secret_keys=old,
    )
    before = stored()

    first = cronwork.ok("rotate-secrets", secret_keys=f"{new},{old}")
    second = cronwork.ok("rotate-secrets", secret_keys=f"{new},{old}")

    assert first.strip() == (
        "re-encrypted 1 secret value(s) in 1 schedule(s) under the first of SECRET_KEYS; 0 already were"
    )
    assert second.strip() == (
        "re-encrypted 0 secret value(s) in 0 schedule(s) under the first of SECRET_KEYS; 1 already were"
    )
    after = stored()
    rotated = after["signed-lines"]
    assert rotated.config["signature"] != before["signed-lines"].config["signature"]
    only_the_new_key = replace(runtime.settings, secret_keys=new)
    task_type = installed_task_types()["example_append_line"]
    assert reveal_secrets(only_the_new_key, task_type, rotated.config)["signature"] == SECRET
    # Not an edit: the version, the tick and the reference stay as they were.
    assert (rotated.version, rotated.dedupe_key) == (1, before["signed-lines"].dedupe_key)
    assert after["by-reference"].config == before["by-reference"].config
    # And the file, applied under the new key alone, still finds the value stored as it says.
    assert cronwork.ok("apply", "-f", "signing.yaml", secret_keys=new).splitlines()[-1] == "nothing to change"


def test_rotate_secrets_names_what_no_key_decrypts(cronwork):
    cronwork.ok(
        "apply", "-f", cronwork.write("signing.yaml", signed()), secret_keys=Fernet.generate_key().decode()
    )

    result = cronwork("rotate-secrets", secret_keys=Fernet.generate_key().decode())
    without_keys = cronwork("rotate-secrets")

    assert result.returncode == 1
    assert "(Append a signed line): none of SECRET_KEYS decrypts config.signature" in result.stderr
    assert without_keys.returncode == 1
    assert "cannot rotate: SECRET_KEYS is empty" in without_keys.stderr


def test_an_edit_made_between_the_plan_and_the_apply_is_never_overwritten(runtime: Runtime) -> None:
    from shared.schedules import update_schedule
    from shared.schedules_as_code import ApplyFailed, DesiredSchedule, Plan, apply_plan, plan_changes

    entry = {"name": "nightly", "task_type": "report_publish", "schedule_type": "manual"}
    entry["config"] = {"reportId": "usage-monthly"}

    def plan(*entries: DesiredSchedule) -> Plan:  # as `cronwork apply` does: a session for the plan
        with runtime.sessions() as session:
            return plan_changes(runtime, session, "team-a", list(entries), prune=False)

    with runtime.sessions() as session:
        apply_plan(runtime, session, plan(DesiredSchedule("n", entry)))
    renaming = plan(DesiredSchedule("n", {**entry, "name": "nightly, renamed by the file"}))
    with runtime.sessions() as session:
        (stored,) = session.scalars(select(TaskSchedule.id)).all()
        session.rollback()
        update_schedule(runtime, session, stored, {"name": "renamed by an operator"})

    with runtime.sessions() as session, pytest.raises(ApplyFailed) as refused:
        apply_plan(runtime, session, renaming)

    assert refused.value.errors == {"key": ["its schedule was edited since the plan (version 1, now 2)"]}
    with runtime.sessions() as session:
        assert session.scalars(select(TaskSchedule.name)).all() == ["renamed by an operator"]
