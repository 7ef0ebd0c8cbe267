"""The operator's page shows trouble and follows the user's role: a schedule overdue past the grace period, one
that keeps failing, the history narrowed to a time range and to user tasks, actions a role may not take marked
unavailable with the reason, and the changes made to a task (the audit trail), field by field.

The browser, the live system and the page helpers are those of ``test_operator_page`` (see conftest).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from playwright.sync_api import Browser, Page, expect

from shared.settings import Settings
from tests.conftest import LiveSystem, Services, environment, free_port, http_ok, wait_for
from tests.e2e.test_operator_page import (
    DESKTOP,
    VIEWER_TIMEZONE,
    ConsoleWatch,
    RestClient,
    colour_family,
    open_page,
    screenshot,
    search_for,
    toast,
    unique,
)

pytestmark = pytest.mark.slow

IN_TROUBLE = re.compile(r"\bis-trouble\b")  # the class of a row that shows trouble


@pytest.fixture
def database(live_system: Any) -> Any:
    """Runs one statement on the live system's database, behind the API."""

    def execute(statement: str, params: tuple[Any, ...]) -> None:
        with psycopg.connect(live_system.database_url) as connection:
            connection.execute(statement, params)

    return execute


def store_run(
    database: Any, queued_at: datetime, *, schedule: dict[str, Any] | None, status: str = "success"
) -> None:
    """A finished entry queued at ``queued_at``: of ``schedule``, or (None) of the system task ``pump``."""
    database(
        """
        INSERT INTO task_run_history (schedule_id, schedule_name, task_type, system_task, status, triggered_by,
                                      queued_at, due_at, started_at, completed_at, duration_ms, attempt, missed_slots)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 1000, 1, 0)
        """,
        (
            schedule and schedule["id"],
            schedule and schedule["name"],
            "report_publish" if schedule else "SYSTEM",
            None if schedule else "pump",
            status,
            "manual" if schedule else "system",
            queued_at,
            queued_at,
            queued_at,
            queued_at + timedelta(seconds=1),
        ),
    )


# ---- trouble ------------------------------------------------------------------------------------------------


def test_a_task_whose_next_run_is_overdue_is_marked_and_says_what_to_check(
    page: Page, rest: RestClient, database: Any
) -> None:
    name = unique("Overdue report")
    # Its next slot is years away, so no tick of it is in flight (the horizon is far shorter).
    task = rest.create_task(name, cronExpression="0 0 29 2 *")
    on_time = unique("On time report")
    rest.create_task(on_time, cronExpression="0 0 29 2 *")
    # What workers that are down leave: the armed slot ten minutes past. Its tick counts as just published, so
    # the live system's pump does not send it again (and mend it) while the test looks.
    database(
        "UPDATE task_schedules SET next_run_at = now() - interval '10 minutes',"
        " tick_published_at = now() + interval '1 day' WHERE id = %s",
        (task["id"],),
    )

    row = search_for(page, name)

    badge = row.get_by_test_id("task-overdue")
    expect(badge).to_have_text("Overdue")
    expect(badge).to_have_attribute("title", re.compile(r"grace period.*Check that the workers"))
    expect(row.get_by_test_id("task-next-run")).to_contain_text("10m ago")
    expect(row).to_have_class(IN_TROUBLE)
    other = search_for(page, on_time)
    expect(other.get_by_test_id("task-overdue")).to_have_count(0)
    expect(other).not_to_have_class(IN_TROUBLE)
    search_for(page, name)
    screenshot(page, "trouble-overdue")


def test_a_task_failing_again_and_again_shows_its_streak_and_its_last_error(
    page: Page, rest: RestClient, database: Any
) -> None:
    name = unique("Failing export")
    task = rest.create_task(name)
    healthy = unique("Healthy export")
    rest.create_task(healthy)
    # What three failed runs in a row leave in the schedule's health row (the worker upserts it with each outcome).
    database(
        "INSERT INTO schedule_health (schedule_id, failure_streak, last_error, last_error_at)"
        " VALUES (%s, 3, %s, now())",
        (task["id"], "HTTP 503 from the report service"),
    )

    row = search_for(page, name)

    streak = row.get_by_test_id("task-failure-streak")
    expect(streak).to_have_text("Failed 3× in a row")
    expect(streak).to_have_attribute("title", re.compile(r"Last error .*: HTTP 503 from the report service"))
    expect(row).to_have_class(IN_TROUBLE)
    # Trouble reads as trouble: the danger colour, like a failed run's badge.
    colour = streak.evaluate("element => getComputedStyle(element).color")
    assert colour_family(colour) == "red", colour
    expect(search_for(page, healthy).get_by_test_id("task-failure-streak")).to_have_count(0)
    search_for(page, name)
    screenshot(page, "trouble-failure-streak")


# ---- history filters ----------------------------------------------------------------------------------------


def test_the_history_narrows_to_a_time_range_and_every_tasks_history_can_hide_system_runs(
    page: Page, rest: RestClient, database: Any, console: Any
) -> None:
    console.allow("status of 422")  # the range typed backwards provokes one on purpose
    name = unique("Ranged report")
    task = rest.create_task(name, scheduleType="manual", cronExpression=None)
    # Entries from a day in 2020 no other test touches: 08:00, 09:00 and 10:00 UTC (03:00 to 05:00 in New York).
    day = datetime(2020, 2, 3, tzinfo=UTC)
    for hour in (8, 9, 10):
        store_run(database, day + timedelta(hours=hour), schedule=task)
    store_run(database, day + timedelta(hours=9, minutes=30), schedule=None)

    search_for(page, name).get_by_test_id("history").click()
    history = page.get_by_test_id("history-dialog")
    rows = history.get_by_test_id("history-row")
    expect(rows).to_have_count(3)
    # One task's history has no system runs to hide.
    expect(history.get_by_test_id("history-hide-system")).to_be_hidden()

    # Typed in the viewer's zone (New York), both ends included: the entries queued at 09:00 and 10:00 UTC.
    history.get_by_test_id("history-from").fill("2020-02-03T04:00")
    history.get_by_test_id("history-to").fill("2020-02-03T05:00")
    expect(rows).to_have_count(2)
    expect(history.get_by_test_id("history-range")).to_have_text("1–2 of 2")

    # Backwards: the server's reason beside the range, and no rows from before.
    history.get_by_test_id("history-to").fill("2020-02-03T02:00")
    expect(history.get_by_test_id("history-span-error")).to_have_text("To: must be after from")
    expect(history.get_by_test_id("history-to")).to_have_attribute("aria-invalid", "true")
    history.get_by_test_id("history-to").fill("2020-02-03T06:00")
    expect(history.get_by_test_id("history-span-error")).to_be_hidden()
    expect(rows).to_have_count(2)
    history.get_by_role("button", name="Close").click()

    # Every task's history over the same span: the user task's runs and the system task's, each named.
    page.get_by_test_id("all-history-button").click()
    expect(history).to_contain_text("Run history: every task")
    history.get_by_test_id("history-from").fill("2020-02-03T03:00")
    history.get_by_test_id("history-to").fill("2020-02-03T05:00")
    expect(rows).to_have_count(4)
    expect(history.get_by_test_id("history-task").filter(has_text=name)).to_have_count(3)
    expect(history.get_by_test_id("history-task").filter(has_text="pump")).to_have_count(1)
    expect(history.get_by_role("columnheader", name="Task")).to_be_visible()

    history.get_by_test_id("history-hide-system").check()
    expect(rows).to_have_count(3)
    expect(history.get_by_test_id("system-badge")).to_have_count(0)
    screenshot(page, "trouble-history-every-task-without-system-runs")
    history.get_by_test_id("history-hide-system").uncheck()
    expect(rows).to_have_count(4)


# ---- roles ----------------------------------------------------------------------------------------------------

VIEWER = "vera.viewer@example.com"
ADMIN_ONLY = "needs the admin role — you are a viewer"
OPERATOR_ONLY = "needs the operator role — you are a viewer"


@pytest.fixture
def header_mode_url(live_system: LiveSystem, services: Services) -> str:
    """Another API on the live system's database, in header mode as behind an authenticating proxy: whoever the
    identity header names, in none of the role groups, is a viewer (AUTH_DEFAULT_ROLE)."""
    settings = Settings(
        database_url=live_system.database_url,
        broker_url=live_system.broker_url,
        port=free_port(),
        demo_task_types="true",
        auth_mode="header",
        auth_default_role="viewer",
    )
    services.start("api", environment(settings))
    base_url = f"http://127.0.0.1:{settings.port}"
    wait_for(lambda: http_ok(f"{base_url}/readyz"), 60, "the header-mode API to become ready")
    return base_url


@pytest.fixture
def viewer_page(browser: Browser, header_mode_url: str, console: ConsoleWatch) -> Iterator[Page]:
    """The page as the viewer sees it: the proxy's identity header on every request."""
    context = browser.new_context(
        viewport=DESKTOP,
        timezone_id=VIEWER_TIMEZONE,
        locale="en-GB",
        extra_http_headers={"X-Forwarded-Email": VIEWER},
    )
    page = context.new_page()
    page.on("console", lambda message: message.type == "error" and console.errors.append(message.text))
    page.on("pageerror", lambda error: console.errors.append(f"uncaught: {error}"))
    open_page(page, header_mode_url)
    yield page
    context.close()
    assert console.unexpected() == [], "the page logged errors to the console"


def test_a_viewer_sees_their_role_and_every_change_unavailable_with_the_reason(
    viewer_page: Page, rest: RestClient
) -> None:
    page = viewer_page
    name = unique("Viewed report")
    rest.create_task(name)

    expect(page.get_by_test_id("signed-in-user")).to_have_text(f"Signed in as {VIEWER}")
    expect(page.get_by_test_id("user-role")).to_have_text("viewer")
    expect(page.get_by_test_id("user-role")).to_have_attribute("title", re.compile("not change or run them"))
    add = page.get_by_test_id("add-task-button")
    expect(add).to_be_disabled()
    expect(add).to_have_attribute("title", f"Add a task: {ADMIN_ONLY}")

    row = search_for(page, name)
    for test_id, reason in (
        ("run-now", OPERATOR_ONLY),
        ("toggle-enabled", OPERATOR_ONLY),
        ("edit", ADMIN_ONLY),
        ("delete", ADMIN_ONLY),
    ):
        action = row.get_by_test_id(test_id)
        expect(action).to_be_disabled()
        expect(action).to_have_attribute("title", re.compile(f": {reason}$"))
    # Still focusable, so a keyboard user reaches it and hears why.
    expect(row.get_by_test_id("delete")).not_to_have_attribute("disabled", "")
    # A press does nothing (Playwright presses it only when forced): the confirmation of a delete never opens.
    row.get_by_test_id("delete").click(force=True)
    expect(page.get_by_test_id("confirm-dialog")).to_be_hidden()
    # With a filter on, pausing or resuming every matching task is an operator's too.
    expect(page.get_by_test_id("pause-matching")).to_have_attribute("title", re.compile(OPERATOR_ONLY))
    expect(page.get_by_test_id("resume-matching")).to_be_disabled()

    # Reading is anyone's: the history, and its Backfill… marked as an operator's.
    row.get_by_test_id("history").click()
    history = page.get_by_test_id("history-dialog")
    expect(history).to_be_visible()
    expect(history.get_by_test_id("backfill-toggle")).to_be_disabled()
    expect(history.get_by_test_id("backfill-toggle")).to_have_attribute("title", re.compile(OPERATOR_ONLY))
    history.get_by_role("button", name="Close").click()
    expect(row.get_by_test_id("changes")).to_be_enabled()
    screenshot(page, "roles-viewer")


def test_a_refused_call_shows_the_servers_reason_in_a_toast(
    viewer_page: Page, rest: RestClient, console: ConsoleWatch, header_mode_url: str
) -> None:
    console.allow("status of 403")  # the refusal this test provokes
    page = viewer_page
    name = unique("Refused report")
    task = rest.create_task(name)
    # A page that believes the viewer may run tasks (their role was lowered since it loaded): the server decides.
    page.route(
        "**/api/scheduler/me",
        lambda route: route.fulfill(
            json={
                "email": VIEWER,
                "authMode": "header",
                "role": "operator",
                "permissions": ["view", "runNow"],
            }
        ),
    )
    open_page(page, header_mode_url)

    search_for(page, name).get_by_test_id("run-now").click()

    expect(
        toast(page, "error", f"runNow needs the operator role; {VIEWER} has the viewer role")
    ).to_be_visible()
    assert rest.history(task["id"]) == []


def test_a_rows_pause_and_resume_disable_and_enable_that_task_alone(page: Page, rest: RestClient) -> None:
    name = unique("Row paused report")
    task = rest.create_task(name)
    row = search_for(page, name)

    row.get_by_test_id("toggle-enabled").click()

    expect(toast(page, "success", f"Paused “{name}”.")).to_be_visible()
    expect(row.get_by_test_id("task-enabled-state")).to_have_text("Disabled")
    expect(row.get_by_test_id("toggle-enabled")).to_have_attribute("title", f"Resume “{name}”")
    assert rest.get_task(task["id"])["enabled"] is False
    row.get_by_test_id("toggle-enabled").click()
    expect(toast(page, "success", f"Resumed “{name}”.")).to_be_visible()
    expect(row.get_by_test_id("task-enabled-state")).to_have_text("Enabled")


# ---- changes --------------------------------------------------------------------------------------------------


def test_the_changes_dialog_shows_who_changed_what_with_each_edits_fields_before_and_after(
    page: Page, rest: RestClient
) -> None:
    name = unique("Audited report")
    task = rest.create_task(name)
    renamed = f"{name} (renamed)"
    rest.call("PUT", f"/api/scheduler/tasks/{task['id']}", {"name": renamed, "owner": "billing@example.com"})

    search_for(page, renamed).get_by_test_id("changes").click()

    dialog = page.get_by_test_id("changes-dialog")
    expect(dialog).to_contain_text(f"Changes: {renamed}")
    items = dialog.get_by_test_id("change-item")
    expect(items).to_have_count(2)
    edit, creation = items.nth(0), items.nth(1)  # newest first
    expect(edit.get_by_test_id("change-actor")).to_have_text("dev@localhost")
    expect(edit.get_by_test_id("change-action")).to_have_text("edited it")
    fields = edit.get_by_test_id("change-field")
    expect(fields).to_have_count(2)
    name_change = edit.locator('[data-testid="change-field"][data-field="name"]')
    expect(name_change.get_by_test_id("change-before")).to_have_text(name)
    expect(name_change.get_by_test_id("change-after")).to_have_text(renamed)
    owner_change = edit.locator('[data-testid="change-field"][data-field="owner"]')
    expect(owner_change.get_by_test_id("change-before")).to_have_text("(none)")
    expect(owner_change.get_by_test_id("change-after")).to_have_text("billing@example.com")
    expect(creation.get_by_test_id("change-action")).to_have_text("created it")
    # A creation lists the values it set: there was nothing before.
    created_name = creation.locator('[data-testid="change-field"][data-field="name"]')
    expect(created_name.get_by_test_id("change-after")).to_have_text(name)
    expect(creation.get_by_test_id("change-before")).to_have_count(0)
    expect(dialog.get_by_test_id("changes-range")).to_have_text("1–2 of 2")
    screenshot(page, "changes-dialog")
