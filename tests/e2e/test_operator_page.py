"""The operator's page in a real browser (Debian's Chromium, driven by Playwright) against the real API,
worker and beat started by the ``live_system`` fixture.

Each test makes its own tasks with unique names, so the tests share one system without seeing each other.
Screenshots of the main views land in ``test-output/screenshots/``.
"""

from __future__ import annotations

import colorsys
import json
import re
import socket
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
VIEWER_TIMEZONE = "America/New_York"  # not UTC, so "your local time" is visibly converted
DESKTOP = {"width": 1360, "height": 900}
RUN_TIMEOUT_MS = 30_000
AUTO_REFRESH_MS = 20_000  # AUTO_REFRESH_MS in services/api/static/js/main.js


# ---- the REST API, for setting the scene faster than clicking ----------------------------------------------


class RestClient:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.base_url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    def create_task(self, name: str, **fields: Any) -> dict[str, Any]:
        task = {
            "name": name,
            "taskType": "report_publish",
            "scheduleType": "cron",
            "cronExpression": "0 9 * * 1-5",
            "timezone": "UTC",
            "config": {"reportId": "compliance-weekly"},
            **fields,
        }
        return self.call("POST", "/api/scheduler/tasks", task)

    def run_now(self, task_id: int) -> dict[str, Any]:
        return self.call("POST", f"/api/scheduler/tasks/{task_id}/run", {})

    def history(self, task_id: int) -> list[dict[str, Any]]:
        return self.call("GET", f"/api/scheduler/history?scheduleId={task_id}&page_size=100")

    def wait_until_runs_finish(self, task_id: int, count: int, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            runs = self.history(task_id)
            if len(runs) >= count and all(run["status"] not in ("queued", "running") for run in runs):
                return
            time.sleep(0.3)
        raise AssertionError(f"the runs of task {task_id} did not finish within {timeout_s} s")

    def get_task(self, task_id: int) -> dict[str, Any]:
        return self.call("GET", f"/api/scheduler/tasks/{task_id}")

    def delete_task(self, task_id: int) -> None:
        self.call("DELETE", f"/api/scheduler/tasks/{task_id}")

    def system_tasks(self) -> list[dict[str, Any]]:
        return self.call("GET", "/api/scheduler/system-tasks")


@contextmanager
def endpoint_that_never_answers() -> Iterator[str]:
    """A URL whose port accepts the connection (in the kernel's backlog) but never answers, so an HTTP task
    calling it stays running until its own timeout."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield f"http://127.0.0.1:{server.getsockname()[1]}/never-answers"


# ---- browser fixtures -------------------------------------------------------------------------------------


class ConsoleWatch:
    """Collects console errors and uncaught exceptions; a test may allow the ones it provokes on purpose."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.allowed: list[str] = []

    def allow(self, fragment: str) -> None:
        self.allowed.append(fragment)

    def unexpected(self) -> list[str]:
        return [error for error in self.errors if not any(fragment in error for fragment in self.allowed)]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def rest(live_system: Any) -> RestClient:
    return RestClient(live_system.base_url)


@pytest.fixture
def console() -> ConsoleWatch:
    return ConsoleWatch()


@pytest.fixture
def page(browser: Browser, live_system: Any, console: ConsoleWatch) -> Iterator[Page]:
    context = browser.new_context(viewport=DESKTOP, timezone_id=VIEWER_TIMEZONE, locale="en-GB")
    page = context.new_page()
    page.on("console", lambda message: message.type == "error" and console.errors.append(message.text))
    page.on("pageerror", lambda error: console.errors.append(f"uncaught: {error}"))
    open_page(page, live_system.base_url)
    yield page
    context.close()
    assert console.unexpected() == [], "the page logged errors to the console"


def open_page(page: Page, base_url: str) -> None:
    page.goto(base_url + "/")
    expect(page.locator("body")).to_have_attribute("data-ready", "true", timeout=15_000)


def open_page_on_a_test_clock(page: Page, base_url: str) -> None:
    """Reload the page with its timers on Playwright's clock: time flows, and ``page.clock.fast_forward`` skips
    ahead, firing the 20-second auto-refresh without waiting for it."""
    page.clock.install()
    open_page(page, base_url)


def mark_rows_as_before_refresh(page: Page) -> Locator:
    """Tag the task rows on screen; the returned locator finds none once a reload has drawn new rows."""
    page.get_by_test_id("task-row").evaluate_all(
        "rows => rows.forEach(row => row.dataset.beforeRefresh = 'yes')"
    )
    return page.locator('[data-testid="task-row"][data-before-refresh]')


def unique(label: str) -> str:
    return f"{label} {uuid.uuid4().hex[:6]}"


def screenshot(page: Page, name: str, *, full_page: bool = False) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)


# ---- page helpers -----------------------------------------------------------------------------------------


def task_row(page: Page, name: str) -> Locator:
    return page.locator(f'[data-testid="task-row"][data-task-name="{name}"]')


def search_for(page: Page, name: str) -> Locator:
    """Narrow the table to one task with the server-side search (other tests' tasks may fill page one)."""
    page.get_by_test_id("filter-search").fill(name)
    expect(page.get_by_test_id("task-row")).to_have_count(1)
    row = task_row(page, name)
    expect(row).to_be_visible()
    return row


def open_add_dialog(page: Page) -> Locator:
    page.get_by_test_id("add-task-button").click()
    dialog = page.get_by_test_id("task-dialog")
    expect(dialog).to_be_visible()
    return dialog


@contextmanager
def sent_update(page: Page) -> Iterator[dict[str, Any]]:
    """The JSON body of the task update (PUT) the page sends inside the block."""
    body: dict[str, Any] = {}
    with page.expect_request(
        lambda request: request.method == "PUT" and "/api/scheduler/tasks/" in request.url
    ) as update:
        yield body
    body.update(update.value.post_data_json)


def selected_label(select: Locator) -> str:
    return str(select.evaluate("select => select.selectedOptions[0]?.label ?? ''"))


def parse_instant(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


def boxes_overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    return (
        a["x"] < b["x"] + b["width"]
        and b["x"] < a["x"] + a["width"]
        and a["y"] < b["y"] + b["height"]
        and b["y"] < a["y"] + a["height"]
    )


def toast(page: Page, kind: str, text: str | re.Pattern[str]) -> Locator:
    return page.get_by_test_id(f"toast-{kind}").filter(has_text=text)


def is_focused(locator: Locator) -> bool:
    return bool(locator.evaluate("element => element === document.activeElement"))


def colour_family(css_colour: str) -> str:
    """The family of a computed ``rgb(...)`` colour, judged by hue and saturation: red, green, blue or grey."""
    red, green, blue = (int(part) / 255 for part in re.findall(r"\d+", css_colour)[:3])
    hue, _, saturation = colorsys.rgb_to_hls(red, green, blue)
    degrees = hue * 360
    if saturation < 0.25:
        return "grey"
    if degrees < 20 or degrees >= 330:
        return "red"
    if 90 <= degrees < 170:
        return "green"
    if 190 <= degrees < 260:
        return "blue"
    return f"other ({css_colour})"


# ---- tests ------------------------------------------------------------------------------------------------


def test_page_explains_itself_to_a_newcomer(page: Page) -> None:
    expect(page).to_have_title(re.compile("Scheduled tasks"))
    expect(page.get_by_role("heading", name="Scheduled tasks", level=1)).to_be_visible()
    expect(page.get_by_test_id("intro")).to_contain_text("Run now")
    expect(page.get_by_test_id("legend")).to_contain_text(f"your local time ({VIEWER_TIMEZONE})")
    expect(page.get_by_test_id("system-tasks")).to_contain_text("built into the scheduler")
    expect(page.get_by_test_id("auto-refresh-toggle")).to_have_text("Pause auto-refresh")
    expect(page.get_by_test_id("signed-in-user")).to_have_text("Signed in as dev@localhost")


def test_create_cron_task_with_live_preview_in_both_time_zones(page: Page) -> None:
    name = unique("Weekday compliance report")
    dialog = open_add_dialog(page)
    dialog.get_by_label("Name").fill(name)
    dialog.get_by_label("Task type").select_option(label="Report Publishing")
    expect(page.get_by_test_id("task-type-description")).to_have_text(
        "Generates and publishes a report (simulated)"
    )
    expect(page.get_by_test_id("cron-preset")).to_have_count(7)
    dialog.get_by_role("button", name="Every Monday at 09:00").click()
    dialog.get_by_role("button", name="Weekdays at 09:00").click()
    expect(dialog.get_by_role("button", name="Weekdays at 09:00")).to_have_attribute("aria-pressed", "true")
    dialog.get_by_label("Time zone").fill("Europe/Berlin")
    dialog.get_by_label("Report").select_option(label="Weekly Compliance Report")

    preview = page.get_by_test_id("cron-preview")
    expect(page.get_by_test_id("cron-description")).to_contain_text("At 09:00, Monday through Friday")
    expect(preview.get_by_test_id("cron-next-run")).to_have_count(5)
    expect(preview).to_contain_text("in Europe/Berlin")
    expect(preview).to_contain_text(f"Your time ({VIEWER_TIMEZONE})")
    # 09:00 in Berlin is 03:00 (or, in the weeks the two DST calendars differ, 04:00) in New York.
    first_run = preview.get_by_test_id("cron-next-run").first.locator("td")
    expect(first_run.nth(0)).to_contain_text("09:00")
    expect(first_run.nth(1)).not_to_contain_text("09:00")
    screenshot(page, "add-dialog-cron-preview")

    page.get_by_test_id("task-save").click()
    expect(dialog).to_be_hidden()
    expect(toast(page, "success", f"Created “{name}”")).to_be_visible()
    row = search_for(page, name)
    expect(row.get_by_test_id("task-schedule")).to_have_text("At 09:00, Monday through Friday")
    expect(row).to_contain_text("Europe/Berlin")
    expect(row).to_contain_text("Report Publishing")
    expect(row.get_by_test_id("task-enabled-state")).to_have_text("Enabled")
    # Its next weekday 09:00 in Berlin, seconds away when the test runs at 08:59:5x there.
    expect(row.get_by_test_id("task-next-run").locator(".time-relative")).to_have_text(
        re.compile(r"^in \d+[smhd]$")
    )
    expect(row.get_by_test_id("task-last-run")).to_have_text("Never")


def test_invalid_cron_is_marked_red_and_cannot_be_saved(page: Page) -> None:
    dialog = open_add_dialog(page)
    dialog.get_by_label("Name").fill(unique("Never saved"))
    dialog.get_by_label("Task type").select_option(label="Report Publishing")
    dialog.get_by_label("Report").select_option(label="Billing Summary")
    cron = page.get_by_test_id("cron-expression")
    cron.fill("61 * * * *")
    expect(page.get_by_test_id("cron-preview-error")).to_be_visible()
    expect(cron).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_test_id("task-save")).to_be_disabled()
    screenshot(page, "add-dialog-invalid-cron")

    cron.fill("*/15 * * * *")
    expect(page.get_by_test_id("cron-description")).to_contain_text("15 minutes")
    expect(cron).to_have_attribute("aria-invalid", "false")
    expect(page.get_by_test_id("task-save")).to_be_enabled()
    page.get_by_test_id("task-cancel").click()
    expect(dialog).to_be_hidden()


def test_a_cron_macro_is_previewed_as_the_fields_it_stands_for_and_saved_as_written(page: Page) -> None:
    name = unique("Nightly digest")
    dialog = open_add_dialog(page)
    dialog.get_by_label("Name").fill(name)
    dialog.get_by_label("Task type").select_option(label="Report Publishing")
    dialog.get_by_label("Report").select_option(label="Billing Summary")
    cron = page.get_by_test_id("cron-expression")

    cron.fill("@reboot")
    expect(page.get_by_test_id("cron-preview-error")).to_contain_text("no such moment")
    expect(page.get_by_test_id("task-save")).to_be_disabled()

    cron.fill("0 0 * * *")
    expect(page.get_by_test_id("cron-description")).to_contain_text("At 00:00")
    expect(page.get_by_test_id("cron-expanded")).to_have_count(0)  # five fields need no expanding

    cron.fill("@Daily")
    expect(page.get_by_test_id("cron-expanded")).to_have_text("@Daily stands for 0 0 * * *")
    expect(page.get_by_test_id("cron-description")).to_contain_text("At 00:00")
    screenshot(page, "add-dialog-cron-macro")
    page.get_by_test_id("task-save").click()
    expect(dialog).to_be_hidden()
    row = search_for(page, name)
    expect(row.get_by_test_id("task-schedule")).to_have_text("At 00:00")
    expect(row.locator(".cron-code")).to_have_text("@Daily")


def test_time_zone_picker_offers_matching_zones_and_the_preview_follows_the_choice(
    page: Page, console: ConsoleWatch
) -> None:
    console.allow("status of 422")  # while only "Kolk" is typed, the preview's server check rejects that zone
    dialog = open_add_dialog(page)
    dialog.get_by_role("button", name="Daily at 09:00").click()
    zone = dialog.get_by_label("Time zone")
    expect(page.locator('#timezone-options option[value="Asia/Kolkata"]')).to_have_count(1)
    zone.fill("")
    zone.press_sequentially("Kolk")
    expect(dialog.locator('[data-error-for="timezone"]')).to_contain_text("Unknown time zone")
    # Chromium draws a datalist's suggestions outside the page: read what it offers for the typed text (it
    # matches anywhere in the name), then choose the suggestion, which puts the full name in the field.
    offered = zone.evaluate(
        "input => [...input.list.options].map(option => option.value)"
        ".filter(value => value.toLowerCase().includes(input.value.toLowerCase()))"
    )
    assert "Asia/Kolkata" in offered, f"typing Kolk offers {offered}"
    zone.fill("Asia/Kolkata")

    preview = page.get_by_test_id("cron-preview")
    expect(preview.get_by_role("columnheader").first).to_have_text("Next 5 runs in Asia/Kolkata")
    expect(preview.get_by_role("columnheader").nth(1)).to_have_text(f"Your time ({VIEWER_TIMEZONE})")
    expect(preview.get_by_test_id("cron-next-run").first.locator("td").first).to_contain_text("09:00")
    expect(dialog.locator('[data-error-for="timezone"]')).to_be_hidden()
    page.get_by_test_id("task-cancel").click()


def test_create_interval_task(page: Page) -> None:
    name = unique("Digest every two hours")
    dialog = open_add_dialog(page)
    dialog.get_by_label("Name").fill(name)
    dialog.get_by_label("Task type").select_option(label="Data Export")
    page.get_by_test_id("schedule-type-interval").check()
    expect(page.get_by_test_id("cron-expression")).to_be_hidden()
    page.get_by_test_id("interval-value").fill("2")
    page.get_by_test_id("interval-unit").select_option(label="hours")
    dialog.get_by_label("Export Format").select_option(label="CSV")
    page.get_by_test_id("task-save").click()

    expect(toast(page, "success", f"Created “{name}”")).to_be_visible()
    row = search_for(page, name)
    expect(row.get_by_test_id("task-schedule")).to_contain_text("2 hours")
    # Its first slot is two hours from now.
    expect(row.get_by_test_id("task-next-run").locator(".time-relative")).to_have_text("in 2h")


def test_server_rejection_keeps_the_dialog_and_shows_the_reason_beside_the_field(
    page: Page, console: ConsoleWatch
) -> None:
    console.allow("status of 422")  # Chromium logs every 4xx answer; this test provokes one on purpose
    name = unique("Too rare")
    dialog = open_add_dialog(page)
    dialog.get_by_label("Name").fill(name)
    dialog.get_by_label("Task type").select_option(label="Report Publishing")
    dialog.get_by_label("Report").select_option(label="Monthly Usage Report")
    page.get_by_test_id("schedule-type-interval").check()
    page.get_by_test_id("interval-value").fill("400")
    page.get_by_test_id("interval-unit").select_option(label="days")
    page.get_by_test_id("task-save").click()

    interval_error = dialog.locator('[data-error-for="intervalMs"]')
    expect(interval_error).to_be_visible()
    expect(page.get_by_test_id("interval-value")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_test_id("form-error")).to_have_text(
        re.compile(r"^The server did not accept the task.*nothing you typed was lost\.$")
    )
    expect(toast(page, "error", "Could not create the task")).to_be_visible()
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("Name")).to_have_value(name)
    expect(dialog.get_by_label("Report")).to_have_value("usage-monthly")
    screenshot(page, "add-dialog-server-error")

    page.get_by_test_id("interval-value").fill("30")
    expect(interval_error).to_be_hidden()
    page.get_by_test_id("task-save").click()
    expect(dialog).to_be_hidden()
    expect(search_for(page, name).get_by_test_id("task-schedule")).to_contain_text("30 days")


def test_create_manual_task_then_run_now_reaches_success_in_history(page: Page) -> None:
    name = unique("On-demand export")
    dialog = open_add_dialog(page)
    dialog.get_by_label("Name").fill(name)
    dialog.get_by_label("Task type").select_option(label="Data Export")
    page.get_by_test_id("schedule-type-manual").check()
    expect(page.get_by_test_id("manual-info")).to_be_visible()
    dialog.get_by_label("Export Format").select_option(label="JSON")
    page.get_by_test_id("task-save").click()
    expect(dialog).to_be_hidden()

    row = search_for(page, name)
    expect(row.get_by_test_id("task-schedule")).to_have_text("Manual only")
    expect(row.get_by_test_id("task-next-run")).to_have_text("Manual only")

    row.get_by_role("button", name=f"Run “{name}” now").click()
    expect(toast(page, "info", f"Queued a run of “{name}”")).to_be_visible()
    row.get_by_role("button", name=f"History of “{name}”").click()
    history = page.get_by_test_id("history-dialog")
    expect(history).to_be_visible()
    expect(history.get_by_role("heading")).to_have_text(f"Run history: {name}")
    first = history.get_by_test_id("history-row").first
    expect(first).to_have_attribute("data-status", "success", timeout=RUN_TIMEOUT_MS)
    expect(first.get_by_test_id("run-status")).to_have_text("Success")
    expect(first.get_by_test_id("run-trigger")).to_have_text("Manual")
    expect(first.get_by_test_id("history-duration")).to_contain_text(re.compile(r"\d"))
    expect(history.get_by_test_id("history-range")).to_have_text("1–1 of 1")
    screenshot(page, "history-dialog")
    page.keyboard.press("Escape")
    expect(history).to_be_hidden()

    expect(toast(page, "success", f"“{name}” ran successfully")).to_be_visible(timeout=RUN_TIMEOUT_MS)
    expect(row.get_by_test_id("run-now")).to_be_enabled()
    expect(row.get_by_test_id("run-status")).to_have_text("Success")
    expect(row.get_by_test_id("task-last-run")).to_contain_text(re.compile(r"Just now|\dm ago"))


def test_run_now_spins_while_the_run_is_queued_or_running(page: Page, rest: RestClient) -> None:
    name = unique("Spinner check")
    rest.create_task(name, scheduleType="manual", cronExpression=None)
    row = search_for(page, name)
    button = row.get_by_test_id("run-now")
    button.click()
    # The page follows the run until its history row leaves queued/running, then stops spinning.
    expect(button).to_have_attribute("aria-busy", "true")
    expect(button).to_be_disabled()
    expect(row.locator(".spin")).to_be_visible()
    expect(toast(page, "success", f"“{name}” ran successfully")).to_be_visible(timeout=RUN_TIMEOUT_MS)
    expect(button).to_be_enabled()
    expect(row.locator(".spin")).to_have_count(0)


def test_failed_run_expands_to_its_error(page: Page, rest: RestClient) -> None:
    name = unique("Unreachable endpoint")
    task = rest.create_task(
        name,
        taskType="http_request",
        scheduleType="manual",
        cronExpression=None,
        config={"url": "http://127.0.0.1:9/never", "timeoutS": 2},
    )
    rest.run_now(task["id"])
    row = search_for(page, name)
    row.get_by_test_id("history").click()
    history = page.get_by_test_id("history-dialog")
    failed = history.locator('[data-testid="history-row"][data-status="failed"]').first
    expect(failed).to_be_visible(timeout=RUN_TIMEOUT_MS)
    expect(failed.get_by_test_id("run-status")).to_have_text("Failed")
    error = history.get_by_test_id("history-error").first
    expect(error).to_be_hidden()
    failed.get_by_test_id("history-expand").click()
    expect(error).to_be_visible()
    expect(error).to_contain_text("127.0.0.1:9")
    screenshot(page, "history-dialog-failed-run")


def test_history_badges_are_coloured_by_outcome(page: Page, rest: RestClient) -> None:
    def colour(badge: Locator) -> str:
        return colour_family(badge.evaluate("element => getComputedStyle(element).color"))

    quick = unique("Quick report")
    quick_task = rest.create_task(quick, scheduleType="manual", cronExpression=None)
    rest.run_now(quick_task["id"])
    with endpoint_that_never_answers() as url:
        slow = unique("Slow endpoint")
        slow_task = rest.create_task(
            slow,
            taskType="http_request",
            scheduleType="manual",
            cronExpression=None,
            config={"url": url, "timeoutS": 5},
        )
        rest.run_now(slow_task["id"])
        search_for(page, slow).get_by_test_id("history").click()
        history = page.get_by_test_id("history-dialog")
        badge = history.get_by_test_id("run-status")

        running = badge.and_(history.locator('[data-status="running"]'))
        expect(running).to_be_visible(timeout=RUN_TIMEOUT_MS)
        assert colour(running) == "blue"
        assert running.evaluate("element => getComputedStyle(element).animationName") != "none", (
            "running does not pulse"
        )

        # After the timeout the run fails, and its automatic retry waits (queued) for 5 s before its attempt.
        failed = badge.and_(history.locator('[data-status="failed"]'))
        expect(failed).to_be_visible(timeout=RUN_TIMEOUT_MS)
        assert colour(failed) == "red"
        queued = badge.and_(history.locator('[data-status="queued"]'))
        expect(queued).to_be_visible()
        assert colour(queued) in ("grey", "blue")
        assert queued.evaluate("element => getComputedStyle(element).animationName") == "none"
        page.keyboard.press("Escape")

    search_for(page, quick).get_by_test_id("history").click()
    success = badge.and_(history.locator('[data-status="success"]'))
    expect(success).to_be_visible(timeout=RUN_TIMEOUT_MS)
    assert colour(success) == "green"


def test_history_dialog_is_usable_on_a_375px_phone(page: Page, rest: RestClient) -> None:
    name = unique("Phone history")
    task = rest.create_task(
        name,
        taskType="http_request",
        scheduleType="manual",
        cronExpression=None,
        config={
            "url": "http://127.0.0.1:9/a/long/path/that/could/push/the/error/text/past/a/phone/screen",
            "timeoutS": 2,
        },
    )
    rest.run_now(task["id"])
    page.set_viewport_size({"width": 375, "height": 812})
    search_for(page, name).get_by_test_id("history").click()
    history = page.get_by_test_id("history-dialog")
    failed = history.locator('[data-testid="history-row"][data-status="failed"]').first
    expect(failed).to_be_visible(timeout=RUN_TIMEOUT_MS)
    failed.get_by_test_id("history-expand").click()
    expect(history.get_by_test_id("history-error").first).to_be_visible()

    assert page.evaluate("() => document.documentElement.scrollWidth") <= 375, "the page scrolls sideways"
    box = history.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375, (
        f"the dialog is off screen: {box}"
    )
    assert history.evaluate("dialog => dialog.scrollWidth <= dialog.clientWidth"), (
        "the dialog scrolls sideways"
    )
    expect(history.get_by_role("button", name="Close")).to_be_in_viewport()
    expect(history.get_by_test_id("history-range")).to_have_text(re.compile(r"^1–\d+ of \d+$"))
    screenshot(page, "history-dialog-375px")


def test_edit_changes_name_and_switches_cron_to_interval(page: Page, rest: RestClient) -> None:
    original = unique("Nightly export")
    rest.create_task(original, taskType="data_export", cronExpression="30 2 * * *", config={"format": "csv"})
    row = search_for(page, original)
    row.get_by_role("button", name=f"Edit “{original}”").click()
    dialog = page.get_by_test_id("task-dialog")
    expect(dialog.get_by_role("heading", name=f"Edit “{original}”")).to_be_visible()
    expect(dialog.get_by_label("Name")).to_have_value(original)
    expect(page.get_by_test_id("cron-expression")).to_have_value("30 2 * * *")
    expect(dialog.get_by_label("Export Format")).to_have_value("csv")
    expect(page.get_by_test_id("task-enabled")).to_be_checked()

    renamed = unique("Half-hourly export")
    dialog.get_by_label("Name").fill(renamed)
    page.get_by_test_id("schedule-type-interval").check()
    page.get_by_test_id("interval-value").fill("30")
    page.get_by_test_id("interval-unit").select_option(label="minutes")
    with sent_update(page) as sent:
        page.get_by_test_id("task-save").click()
    expect(dialog).to_be_hidden()
    expect(toast(page, "success", f"Saved “{renamed}”")).to_be_visible()
    # What changed, and the new type's timing (the server drops the cron expression itself); nothing else.
    assert sent == {"name": renamed, "scheduleType": "interval", "intervalMs": 30 * 60_000}

    row = search_for(page, renamed)
    expect(row.get_by_test_id("task-schedule")).to_contain_text("30 minutes")
    expect(row.locator(".cron-code")).to_have_count(0)


def test_disable_pauses_the_task_and_the_enabled_filter_finds_it(page: Page, rest: RestClient) -> None:
    name = unique("Pausable digest")
    rest.create_task(name, taskType="report_publish", config={"reportId": "usage-monthly"})
    row = search_for(page, name)
    row.get_by_test_id("edit").click()
    page.get_by_test_id("task-enabled").uncheck()
    with sent_update(page) as sent:
        page.get_by_test_id("task-save").click()
    expect(page.get_by_test_id("task-dialog")).to_be_hidden()
    assert sent == {"enabled": False}

    expect(row.get_by_test_id("task-enabled-state")).to_have_text("Disabled")
    expect(row.get_by_test_id("task-next-run")).to_have_text("Paused (disabled)")
    page.get_by_test_id("filter-enabled").select_option(label="Enabled only")
    expect(page.get_by_test_id("tasks-empty")).to_have_text("No tasks match these filters.")
    page.get_by_test_id("filter-enabled").select_option(label="Disabled only")
    expect(task_row(page, name)).to_be_visible()
    assert "enabled=false" in page.url  # the filtered view can be bookmarked


def test_a_seconds_interval_opens_in_seconds_and_a_rename_leaves_its_timing_and_slots_alone(
    page: Page, rest: RestClient
) -> None:
    name = unique("Five-second poll")
    task = rest.create_task(name, scheduleType="interval", cronExpression=None, intervalMs=5000)
    try:
        before = rest.get_task(task["id"])
        search_for(page, name).get_by_test_id("edit").click()
        dialog = page.get_by_test_id("task-dialog")
        expect(page.get_by_test_id("interval-value")).to_have_value("5")
        assert selected_label(page.get_by_test_id("interval-unit")) == "seconds"
        expect(page.get_by_test_id("interval-hint")).to_have_text(f"{before['description']}, as saved.")

        renamed = unique("Five-second poll, renamed")
        dialog.get_by_label("Name").fill(renamed)
        with sent_update(page) as sent:
            page.get_by_test_id("task-save").click()
        expect(toast(page, "success", f"Saved “{renamed}”")).to_be_visible()
        assert sent == {"name": renamed}, "the page sent back fields nobody changed"

        after = rest.get_task(task["id"])
        assert (after["name"], after["intervalMs"], after["scheduleType"]) == (renamed, 5000, "interval")
        # The chain keeps firing every 5 s meanwhile, so its next slot may have moved on, but only along its own
        # grid: a re-armed chain would start again one interval after the save, off that grid.
        moved = parse_instant(after["nextRunAt"]) - parse_instant(before["nextRunAt"])
        assert moved % timedelta(milliseconds=5000) == timedelta(0), (
            f"the chain was re-armed: next slot {before['nextRunAt']} became {after['nextRunAt']}"
        )
    finally:
        rest.delete_task(task["id"])  # a 5 s chain would keep the shared worker busy for the other tests


def test_an_interval_reads_in_the_servers_words_in_the_table_and_the_form(
    page: Page, rest: RestClient
) -> None:
    name = unique("Fast interval")
    task = rest.create_task(
        name, scheduleType="interval", cronExpression=None, intervalMs=1500, enabled=False
    )
    described = task["description"]
    assert described == "Every 1500 ms"
    row = search_for(page, name)
    expect(row.get_by_test_id("task-schedule")).to_have_text(described)

    row.get_by_test_id("edit").click()
    dialog = page.get_by_test_id("task-dialog")
    expect(page.get_by_test_id("interval-value")).to_have_value("1500")  # exactly, never rounded
    assert selected_label(page.get_by_test_id("interval-unit")) == "milliseconds"
    expect(page.get_by_test_id("interval-hint")).to_have_text(f"{described}, as saved.")
    # A value not yet saved has no server description yet: the form says exactly how long it is.
    page.get_by_test_id("interval-value").fill("2")
    page.get_by_test_id("interval-unit").select_option(label="seconds")
    expect(page.get_by_test_id("interval-hint")).to_have_text(
        "2,000 ms between runs, counted from when you save."
    )
    page.get_by_test_id("interval-value").fill("1500")
    page.get_by_test_id("interval-unit").select_option(label="milliseconds")
    expect(page.get_by_test_id("interval-hint")).to_have_text(f"{described}, as saved.")

    page.get_by_test_id("task-save").click()  # nothing changed: nothing is sent
    expect(dialog).to_be_hidden()
    expect(toast(page, "info", f"Nothing changed: “{name}” is as it was.")).to_be_visible()
    assert rest.get_task(task["id"])["version"] == task["version"]


def test_enabled_switch_draws_its_track_and_its_knob_never_covers_the_label(
    page: Page, rest: RestClient
) -> None:
    name = unique("Switch check")
    rest.create_task(name)
    search_for(page, name).get_by_test_id("edit").click()
    switch = page.get_by_test_id("task-enabled")
    track, knob, label = (
        page.get_by_test_id(part) for part in ("switch-track", "switch-knob", "switch-label")
    )
    expect(label).to_have_text("Enabled")
    for checked in (True, False):
        switch.set_checked(checked)
        page.wait_for_timeout(300)  # the knob slides for 0.15 s
        track_box, knob_box, label_box = (part.bounding_box() for part in (track, knob, label))
        assert track_box and knob_box and label_box
        assert track_box["width"] >= 30 and track_box["height"] >= 16, f"no track drawn: {track_box}"
        background = track.evaluate("element => getComputedStyle(element).backgroundColor")
        assert background not in ("rgba(0, 0, 0, 0)", "transparent"), "the track has no colour"
        assert (
            track_box["x"] <= knob_box["x"]
            and knob_box["x"] + knob_box["width"] <= track_box["x"] + track_box["width"]
        ), f"the knob ({knob_box}) sits outside its track ({track_box})"
        assert not boxes_overlap(knob_box, label_box), f"the knob ({knob_box}) covers the label ({label_box})"
        assert not boxes_overlap(track_box, label_box), (
            f"the track ({track_box}) runs under the label ({label_box})"
        )
    screenshot(page, "edit-dialog-enabled-switch")
    page.get_by_test_id("task-cancel").click()


def test_page_load_asks_no_cron_preview_and_system_tasks_read_in_the_servers_words(
    page: Page, rest: RestClient
) -> None:
    previews: list[str] = []
    page.on(
        "request",
        lambda request: "/api/scheduler/cron/preview" in request.url and previews.append(request.url),
    )
    page.reload()
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    page.wait_for_load_state("networkidle")
    assert previews == [], f"the page asked for cron previews on load: {previews}"

    expect(page.get_by_test_id("system-task-row")).to_have_count(3)
    for system_task_id, words in (
        ("session_cleanup", "Every 5 minutes"),
        ("pump", "Every minute"),
        ("history_retention", "At 17 minutes past the hour"),
    ):
        row = page.locator(f'[data-testid="system-task-row"][data-system-task-id="{system_task_id}"]')
        expect(row.get_by_test_id("task-schedule")).to_have_text(words)


def test_delete_asks_for_confirmation_naming_the_task(page: Page, rest: RestClient) -> None:
    name = unique("Doomed report")
    rest.create_task(name)
    row = search_for(page, name)
    row.get_by_role("button", name=f"Delete “{name}”").click()
    confirm = page.get_by_test_id("confirm-dialog")
    expect(confirm).to_be_visible()
    expect(confirm.get_by_test_id("confirm-task-name")).to_have_text(f"“{name}”")
    expect(page.get_by_test_id("confirm-cancel")).to_be_focused()  # the safe choice
    page.get_by_test_id("confirm-cancel").click()
    expect(confirm).to_be_hidden()
    expect(row).to_be_visible()

    row.get_by_test_id("delete").click()
    page.get_by_test_id("confirm-ok").click()
    expect(toast(page, "success", f"Deleted “{name}”")).to_be_visible()
    expect(task_row(page, name)).to_have_count(0)
    expect(page.get_by_test_id("tasks-empty")).to_be_visible()


def test_run_now_and_delete_of_a_task_deleted_elsewhere_explain_and_the_page_recovers(
    page: Page, rest: RestClient, console: ConsoleWatch
) -> None:
    console.allow("status of 404")  # Chromium logs the API's 404 answers this test provokes on purpose
    name = unique("Deleted elsewhere")
    task = rest.create_task(name)
    row = search_for(page, name)
    rest.delete_task(task["id"])  # another operator, behind this page's back

    row.get_by_role("button", name=f"Run “{name}” now").click()
    expect(toast(page, "error", f"Could not run “{name}”")).to_be_visible()
    expect(row.get_by_test_id("run-now")).to_be_enabled()  # no spinner for a run that never started
    expect(row.get_by_test_id("run-now")).not_to_have_attribute("aria-busy", "true")

    row.get_by_role("button", name=f"Delete “{name}”").click()
    page.get_by_test_id("confirm-ok").click()
    expect(toast(page, "error", f"Could not delete “{name}”")).to_be_visible()
    expect(toast(page, "success", f"Deleted “{name}”")).to_have_count(0)

    page.get_by_test_id("refresh-button").click()
    expect(task_row(page, name)).to_have_count(0)
    expect(page.get_by_test_id("tasks-empty")).to_have_text("No tasks match these filters.")
    expect(page.get_by_test_id("load-error")).to_be_hidden()


def test_an_edit_of_a_task_changed_meanwhile_is_refused_and_reload_shows_the_other_change(
    page: Page, rest: RestClient, console: ConsoleWatch
) -> None:
    console.allow("status of 412")  # Chromium logs the API's 412 answer this test provokes on purpose
    name = unique("Contended report")
    task = rest.create_task(name)
    search_for(page, name).get_by_test_id("edit").click()
    dialog = page.get_by_test_id("task-dialog")
    expect(dialog.get_by_label("Name")).to_have_value(name)

    theirs = f"{name} (renamed by Bob)"  # another operator saves while this dialog is open
    rest.call("PATCH", f"/api/scheduler/tasks/{task['id']}", {"name": theirs, "owner": "bob"})
    dialog.get_by_label("Name").fill(f"{name} (renamed by Alice)")
    with page.expect_request(lambda request: request.method == "PUT") as update:
        page.get_by_test_id("task-save").click()

    assert update.value.headers["if-match"] == f'"{task["id"]}-1"'  # the task as the dialog read it
    conflict = page.get_by_test_id("conflict-message")
    expect(conflict).to_contain_text("This task was changed by someone else since you opened it.")
    expect(toast(page, "error", "changed by someone else since you opened it")).to_be_visible()
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("Name")).to_have_value(f"{name} (renamed by Alice)")  # kept until Reload
    assert (rest.get_task(task["id"])["name"], rest.get_task(task["id"])["owner"]) == (theirs, "bob")
    screenshot(page, "edit-dialog-conflict")

    page.get_by_test_id("conflict-reload").click()
    expect(dialog.get_by_role("heading", name=f"Edit “{theirs}”")).to_be_visible()
    expect(dialog.get_by_label("Name")).to_have_value(theirs)
    expect(dialog.get_by_label("Owner")).to_have_value("bob")
    expect(page.get_by_test_id("form-error")).to_be_hidden()
    expect(dialog.get_by_label("Name")).to_be_focused()
    expect(task_row(page, theirs)).to_be_visible()  # the list reloaded too

    # Made again on the task as it is now, the edit applies: and sends only itself.
    dialog.get_by_label("Name").fill(f"{name} (renamed by Alice)")
    with sent_update(page) as sent:
        page.get_by_test_id("task-save").click()
    expect(dialog).to_be_hidden()
    assert sent == {"name": f"{name} (renamed by Alice)"}
    expect(toast(page, "success", f"Saved “{name} (renamed by Alice)”")).to_be_visible()
    stored = rest.get_task(task["id"])
    assert (stored["name"], stored["owner"], stored["version"]) == (f"{name} (renamed by Alice)", "bob", 3)


def test_a_delete_of_a_task_changed_since_the_list_was_loaded_is_refused_and_the_list_reloads(
    page: Page, rest: RestClient, console: ConsoleWatch
) -> None:
    console.allow("status of 412")
    name = unique("Contended delete")
    task = rest.create_task(name)
    row = search_for(page, name)
    rest.call("PATCH", f"/api/scheduler/tasks/{task['id']}", {"owner": "bob"})  # behind the page's back

    with page.expect_request(lambda request: request.method == "DELETE") as delete:
        row.get_by_test_id("delete").click()
        page.get_by_test_id("confirm-ok").click()

    assert delete.value.headers["if-match"] == f'"{task["id"]}-1"'
    expect(toast(page, "error", f"Did not delete “{name}”: it was changed by someone else")).to_be_visible()
    expect(toast(page, "success", f"Deleted “{name}”")).to_have_count(0)
    expect(task_row(page, name).get_by_test_id("row-owner")).to_have_text("bob")  # the list, as it is now
    assert rest.get_task(task["id"])["owner"] == "bob"

    task_row(page, name).get_by_test_id("delete").click()  # as it is now: deleted
    page.get_by_test_id("confirm-ok").click()
    expect(toast(page, "success", f"Deleted “{name}”")).to_be_visible()
    expect(task_row(page, name)).to_have_count(0)


def test_history_is_paginated_by_the_server(page: Page, rest: RestClient) -> None:
    name = unique("Busy manual task")
    task = rest.create_task(name, scheduleType="manual", cronExpression=None)
    for _ in range(12):
        rest.run_now(task["id"])
    rest.wait_until_runs_finish(task["id"], 12)

    search_for(page, name).get_by_test_id("history").click()
    history = page.get_by_test_id("history-dialog")
    rows = history.get_by_test_id("history-row")
    expect(history.get_by_test_id("history-range")).to_have_text("1–10 of 12")
    expect(rows).to_have_count(10)
    expect(history.get_by_test_id("history-page-label")).to_have_text("Page 1 of 2")
    expect(history.get_by_test_id("history-prev")).to_be_disabled()

    history.get_by_test_id("history-next").click()
    expect(history.get_by_test_id("history-range")).to_have_text("11–12 of 12")
    expect(rows).to_have_count(2)
    expect(history.get_by_test_id("history-next")).to_be_disabled()
    history.get_by_test_id("history-prev").click()
    expect(history.get_by_test_id("history-range")).to_have_text("1–10 of 12")

    history.get_by_test_id("history-page-size").select_option("25")
    expect(history.get_by_test_id("history-range")).to_have_text("1–12 of 12")
    expect(rows).to_have_count(12)
    expect(history.get_by_test_id("history-next")).to_be_disabled()


def test_task_list_is_paginated_and_filtered_by_the_server(page: Page, rest: RestClient) -> None:
    batch = uuid.uuid4().hex[:6]
    for number in range(26):
        rest.create_task(f"Batch {batch} report {number:02}")
    rest.create_task(f"Batch {batch} export", taskType="data_export", config={"format": "xlsx"})

    page.get_by_test_id("filter-search").fill(f"Batch {batch}")
    expect(page.get_by_test_id("task-range")).to_have_text("1–25 of 27")
    expect(page.get_by_test_id("task-row")).to_have_count(25)
    page.get_by_test_id("task-next").click()
    expect(page.get_by_test_id("task-range")).to_have_text("26–27 of 27")
    expect(page.get_by_test_id("task-row")).to_have_count(2)
    expect(page.get_by_test_id("task-next")).to_be_disabled()

    page.get_by_test_id("filter-type").select_option(label="Data Export")
    expect(page.get_by_test_id("task-range")).to_have_text("1–1 of 1")
    expect(task_row(page, f"Batch {batch} export")).to_be_visible()
    page.get_by_role("button", name="Clear filters").click()
    expect(page.get_by_test_id("filter-search")).to_have_value("")


def test_keyboard_dialogs_trap_focus_and_close_on_escape(page: Page) -> None:
    add = page.get_by_test_id("add-task-button")
    add.focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_test_id("task-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("Name")).to_be_focused()
    stops = []
    for _ in range(25):
        page.keyboard.press("Tab")
        stops.append(
            page.evaluate(
                """() => {
                    const focused = document.activeElement;
                    if (focused === document.body) return "browser";
                    const where = document.getElementById("task-dialog").contains(focused) ? "dialog" : "page";
                    return `${where}:${focused.dataset.testid || focused.getAttribute("aria-label") || focused.tagName}`;
                }"""
            )
        )
    # Chromium's native modal dialog lets Tab go from its last control to the browser's own toolbar (headless,
    # that reads as <body>) and then back to its first control; that one stop is all that lies outside it.
    assert [stop for stop in stops if not stop.startswith("dialog:")] == ["browser"], (
        f"Tab left the dialog: {stops}"
    )
    wrap = stops.index("browser")
    assert stops[wrap - 1] == "dialog:task-save", f"Tab left the dialog before its last control: {stops}"
    assert stops[wrap + 1 : wrap + 3] == ["dialog:Close", "dialog:task-name"], (
        f"Tab did not wrap to the top: {stops}"
    )
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(add).to_be_focused()


def test_keyboard_reaches_a_rows_actions_and_keeps_its_place_through_auto_refresh(
    page: Page, rest: RestClient, live_system: Any
) -> None:
    open_page_on_a_test_clock(page, live_system.base_url)
    name = unique("Keyboard reachable")
    rest.create_task(name)
    row = search_for(page, name)
    expect(page.get_by_test_id("filter-search")).to_be_focused()
    run_now, toggle, history, changes, edit, delete = (
        row.get_by_test_id(action)
        for action in ("run-now", "toggle-enabled", "history", "changes", "edit", "delete")
    )
    for _ in range(10):  # past the other filters, Clear filters, Pause matching and Resume matching
        page.keyboard.press("Tab")
        if is_focused(run_now):
            break
    expect(run_now).to_be_focused()
    for action in (toggle, history, changes, edit, delete):
        page.keyboard.press("Tab")
        expect(action).to_be_focused()
    page.keyboard.press("Shift+Tab")
    expect(edit).to_be_focused()

    # The 20-second auto-refresh redraws the rows; focus moves to the same button of the new row.
    old_rows = mark_rows_as_before_refresh(page)
    page.clock.fast_forward(AUTO_REFRESH_MS)
    expect(old_rows).to_have_count(0)
    expect(edit).to_be_focused()

    page.keyboard.press("Enter")
    dialog = page.get_by_test_id("task-dialog")
    expect(dialog.get_by_role("heading", name=f"Edit “{name}”")).to_be_visible()
    old_rows = mark_rows_as_before_refresh(page)
    page.clock.fast_forward(AUTO_REFRESH_MS)  # a refresh while the dialog is open must not lose its opener
    expect(old_rows).to_have_count(0)
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(edit).to_be_focused()


def test_auto_refresh_can_be_paused_and_refresh_is_manual_too(page: Page, rest: RestClient) -> None:
    toggle = page.get_by_test_id("auto-refresh-toggle")
    toggle.click()
    expect(toggle).to_have_text("Resume auto-refresh")
    expect(toggle).to_have_attribute("aria-pressed", "false")
    expect(page.locator("#updated-at")).to_contain_text("paused")

    name = unique("Appears on refresh")
    page.get_by_test_id("filter-search").fill(name)
    expect(page.get_by_test_id("tasks-empty")).to_have_text("No tasks match these filters.")
    rest.create_task(name)
    page.get_by_test_id("refresh-button").click()
    expect(toast(page, "info", "Task list refreshed")).to_be_visible()
    expect(task_row(page, name)).to_be_visible()

    page.reload()  # the choice is remembered
    expect(page.get_by_test_id("auto-refresh-toggle")).to_have_text("Resume auto-refresh")
    page.get_by_test_id("auto-refresh-toggle").click()
    expect(page.get_by_test_id("auto-refresh-toggle")).to_have_text("Pause auto-refresh")


# Counts the page's GETs of the task list, from the moment it asks (a refresh's request is sent synchronously).
COUNT_TASK_LIST_LOADS = """
    window.taskListLoads = 0;
    const realFetch = window.fetch.bind(window);
    window.fetch = (resource, init) => {
        const url = new URL(String(resource), window.location.href);
        if (url.pathname === "/api/scheduler/tasks" && (init?.method ?? "GET") === "GET") window.taskListLoads += 1;
        return realFetch(resource, init);
    };
"""


def test_auto_refresh_brings_in_new_tasks_by_itself_but_not_while_paused(
    page: Page, rest: RestClient, live_system: Any
) -> None:
    page.add_init_script(COUNT_TASK_LIST_LOADS)
    open_page_on_a_test_clock(page, live_system.base_url)
    search = page.get_by_test_id("filter-search")
    empty = page.get_by_test_id("tasks-empty")

    arriving = unique("Arrives by itself")
    search.fill(arriving)
    expect(empty).to_have_text("No tasks match these filters.")
    rest.create_task(arriving)
    page.clock.fast_forward(AUTO_REFRESH_MS)
    expect(task_row(page, arriving)).to_be_visible()  # nobody pressed Refresh

    toggle = page.get_by_test_id("auto-refresh-toggle")
    toggle.click()
    expect(toggle).to_have_text("Resume auto-refresh")
    waiting = unique("Waits for Refresh")
    search.fill(waiting)
    expect(empty).to_have_text("No tasks match these filters.")
    rest.create_task(waiting)
    loads_before = page.evaluate("window.taskListLoads")
    page.clock.fast_forward(AUTO_REFRESH_MS + 5_000)
    assert page.evaluate("window.taskListLoads") == loads_before, "the paused page reloaded the task list"
    expect(task_row(page, waiting)).to_have_count(0)
    page.get_by_test_id("refresh-button").click()
    expect(task_row(page, waiting)).to_be_visible()


def test_dark_theme(page: Page, rest: RestClient) -> None:
    name = unique("Dark mode sample")
    rest.create_task(name)
    search_for(page, name)
    page.get_by_test_id("theme-toggle").click()
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    background = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
    red, green, blue = (int(part) for part in re.findall(r"\d+", background)[:3])
    assert red + green + blue < 120, f"the dark theme's background is not dark: {background}"
    # Buttons fade to the dark surface (a short CSS transition): let it finish before the screenshot.
    expect(page.get_by_test_id("refresh-button")).to_have_css("background-color", "rgb(13, 35, 51)")
    screenshot(page, "task-table-dark")
    page.reload()
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    expect(page.get_by_test_id("theme-toggle")).to_have_attribute("aria-label", "Switch to light theme")


def test_usable_on_a_375px_phone(page: Page, rest: RestClient) -> None:
    name = unique("Phone check")
    rest.create_task(name, timezone="Europe/Paris")
    page.set_viewport_size({"width": 375, "height": 812})
    page.reload()
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    row = search_for(page, name)
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 375, "the page scrolls sideways"
    box = row.get_by_test_id("delete").bounding_box()
    assert box is not None and box["x"] + box["width"] <= 375, "the row's actions are off screen"
    screenshot(page, "task-table-375px", full_page=True)

    open_add_dialog(page)
    dialog_box = page.get_by_test_id("task-dialog").bounding_box()
    assert dialog_box is not None and dialog_box["width"] <= 375
    expect(page.get_by_test_id("task-save")).to_be_in_viewport()
    screenshot(page, "add-dialog-375px")


def test_system_tasks_are_read_only_with_real_runs(page: Page, live_system: Any) -> None:
    system = page.get_by_test_id("system-tasks")
    rows = system.get_by_test_id("system-task-row")
    expect(rows.first).to_be_visible()
    expect(rows.first.get_by_test_id("system-badge")).to_have_text("SYSTEM")
    expect(rows.first.get_by_test_id("read-only")).to_be_visible()
    for action in ("run-now", "edit", "delete"):
        expect(system.get_by_test_id(action)).to_have_count(0)
    expect(rows.first.get_by_test_id("task-next-run")).to_contain_text(re.compile(r"in \d+"))

    # The pump runs every minute: wait (refreshing) until its real last run shows.
    pump = rows.filter(has_text="Pump")
    deadline = time.monotonic() + 90
    while "Never" in pump.get_by_test_id("task-last-run").inner_text() and time.monotonic() < deadline:
        page.wait_for_timeout(2_000)
        page.get_by_test_id("refresh-button").click()
    expect(pump.get_by_test_id("task-last-run")).to_contain_text(re.compile(r"ago|Just now"))
    screenshot(page, "task-table")
    system.screenshot(path=str(SCREENSHOTS / "system-tasks.png"))

    pump.get_by_test_id("history").click()
    history = page.get_by_test_id("history-dialog")
    expect(history.get_by_test_id("history-row").first.get_by_test_id("run-trigger")).to_have_text("System")


# ---- real work: secret fields, JSON fields, run settings, owner and labels, bulk pause, run output ---------

PLUGIN_TYPE = "Append a line (example plugin)"  # examples/cronwork-example-tasks, with a secret field


@pytest.fixture
def stored_config(live_system: Any) -> Any:
    """Reads a schedule's config as the database holds it (a secret field encrypted), behind the API."""

    def read(task_id: int) -> dict[str, Any]:
        with psycopg.connect(live_system.database_url) as connection:
            row = connection.execute("SELECT config FROM task_schedules WHERE id = %s", (task_id,)).fetchone()
        assert row is not None, f"no schedule {task_id} in the database"
        config = row[0]
        return dict(json.loads(config) if isinstance(config, str) else config)

    return read


@contextmanager
def sent_create(page: Page) -> Iterator[dict[str, Any]]:
    """The JSON body of the task creation (POST) the page sends inside the block."""
    body: dict[str, Any] = {}
    with page.expect_request(
        lambda request: request.method == "POST" and request.url.endswith("/api/scheduler/tasks")
    ) as create:
        yield body
    body.update(create.value.post_data_json)


def inputs_holding(page: Page, text: str) -> list[str]:
    """The ids of the page's inputs whose current value (a property, which the HTML does not show) holds
    ``text``."""
    return list(
        page.evaluate(
            "text => [...document.querySelectorAll('input, textarea')]"
            ".filter(input => input.value.includes(text)).map(input => input.id)",
            text,
        )
    )


def test_a_secret_is_typed_once_then_shows_as_set_and_an_edit_keeps_it_unless_replaced(
    page: Page, rest: RestClient, stored_config: Any
) -> None:
    secret = f"e2e-signing-{uuid.uuid4().hex}"
    name = unique("Signed lines")
    dialog = open_add_dialog(page)
    dialog.get_by_label("Name").fill(name)
    dialog.get_by_label("Task type").select_option(label=PLUGIN_TYPE)
    page.get_by_test_id("schedule-type-manual").check()
    dialog.get_by_label("File").fill(f"/tmp/cronwork-e2e-{uuid.uuid4().hex}.txt")
    expect(dialog.get_by_text("An example of a secret field")).to_be_visible()  # the field's help
    signature = page.get_by_test_id("config-signature")
    expect(signature).to_have_attribute("type", "password")
    signature.fill(secret)
    with sent_create(page) as created:
        page.get_by_test_id("task-save").click()
    expect(toast(page, "success", f"Created “{name}”")).to_be_visible()
    assert created["config"]["signature"] == secret  # typed once, sent once
    row = search_for(page, name)
    task_id = int(str(row.get_attribute("data-task-id")))
    expect(row).to_contain_text("Signing key: set")
    assert secret not in page.content()
    assert inputs_holding(page, secret) == [], "the typed secret stayed in an input after the save"
    encrypted = stored_config(task_id)["signature"]
    assert set(encrypted) == {"encrypted"} and secret not in json.dumps(encrypted)

    # Shown as set, never as its value; a rename sends nothing of the config, and the stored secret stays.
    row.get_by_test_id("edit").click()
    expect(page.get_by_test_id("config-signature-status")).to_have_text("set")
    expect(page.get_by_test_id("config-signature-replace")).to_be_visible()
    assert secret not in page.content() and inputs_holding(page, secret) == []
    screenshot(page, "edit-dialog-secret-set")
    renamed = unique("Signed lines, renamed")
    dialog.get_by_label("Name").fill(renamed)
    with sent_update(page) as sent:
        page.get_by_test_id("task-save").click()
    expect(dialog).to_be_hidden()  # closed once the server answered
    expect(toast(page, "success", f"Saved “{renamed}”").last).to_be_visible()
    assert sent == {"name": renamed}
    assert rest.get_task(task_id)["config"]["signature"] == {"set": True}
    assert stored_config(task_id)["signature"] == encrypted

    # Another config field changed: the config goes back with the secret as the API showed it, which keeps it.
    row = search_for(page, renamed)
    row.get_by_test_id("edit").click()
    dialog.get_by_label("Line").fill("{runId} checked")
    with sent_update(page) as sent:
        page.get_by_test_id("task-save").click()
    expect(dialog).to_be_hidden()  # closed once the server answered
    expect(toast(page, "success", f"Saved “{renamed}”").last).to_be_visible()
    assert sent["config"]["signature"] == {"set": True} and secret not in json.dumps(sent)
    assert stored_config(task_id)["signature"] == encrypted

    # Replaced: the new value is sent once and stored (encrypted anew); it is nowhere on the page afterwards.
    replacement = f"e2e-rotated-{uuid.uuid4().hex}"
    row.get_by_test_id("edit").click()
    page.get_by_test_id("config-signature-replace").click()
    expect(page.get_by_test_id("config-signature")).to_be_focused()
    expect(page.get_by_test_id("config-signature")).to_have_attribute("type", "password")
    page.get_by_test_id("config-signature").fill(replacement)
    with sent_update(page) as sent:
        page.get_by_test_id("task-save").click()
    expect(dialog).to_be_hidden()  # closed once the server answered
    expect(toast(page, "success", f"Saved “{renamed}”").last).to_be_visible()
    assert sent == {
        "config": {"path": created["config"]["path"], "line": "{runId} checked", "signature": replacement}
    }
    after = stored_config(task_id)["signature"]
    assert set(after) == {"encrypted"} and after != encrypted
    assert replacement not in page.content() and inputs_holding(page, replacement) == []
    row.get_by_test_id("edit").click()
    expect(page.get_by_test_id("config-signature-status")).to_have_text("set")
    assert replacement not in page.content() and inputs_holding(page, replacement) == []
    page.get_by_test_id("task-cancel").click()


def test_a_secret_kept_by_reference_reads_as_its_reference_and_replace_can_be_undone(
    page: Page, rest: RestClient
) -> None:
    name = unique("Signed by reference")
    task = rest.create_task(
        name,
        taskType="example_append_line",
        scheduleType="manual",
        cronExpression=None,
        config={"path": "/tmp/cronwork-e2e-reference.txt", "signature": {"env": "SIGNING_KEY"}},
    )
    row = search_for(page, name)
    expect(row).to_contain_text("Signing key: from env SIGNING_KEY")
    row.get_by_test_id("edit").click()
    status = page.get_by_test_id("config-signature-status")
    expect(status).to_have_text("from env SIGNING_KEY")

    page.get_by_test_id("config-signature-replace").click()
    expect(status).to_have_count(0)
    page.get_by_test_id("config-signature").fill("not kept")
    page.get_by_test_id("config-signature-keep").click()  # changed my mind: the reference stays
    expect(status).to_have_text("from env SIGNING_KEY")
    page.get_by_test_id("task-save").click()
    expect(toast(page, "info", f"Nothing changed: “{name}” is as it was.")).to_be_visible()
    assert rest.get_task(task["id"])["config"]["signature"] == {"env": "SIGNING_KEY"}


def test_a_json_field_is_a_textarea_read_as_json_with_its_error_beside_it(
    page: Page, rest: RestClient
) -> None:
    name = unique("Webhook with headers")
    dialog = open_add_dialog(page)
    dialog.get_by_label("Name").fill(name)
    dialog.get_by_label("Task type").select_option(label="HTTP Request")
    page.get_by_test_id("schedule-type-manual").check()
    dialog.get_by_label("URL").fill("https://example.com/hook")
    headers = page.get_by_test_id("config-headers")
    assert headers.evaluate("element => element.tagName") == "TEXTAREA"
    headers.fill('{"X-Team": billing}')
    headers.blur()  # leaving the field says at once that it is not JSON
    error = dialog.locator('[data-error-for="config.headers"]')
    expect(error).to_contain_text("Not valid JSON")
    expect(headers).to_have_attribute("aria-invalid", "true")
    page.get_by_test_id("task-save").click()  # refused by the page: nothing is sent
    expect(dialog).to_be_visible()
    expect(error).to_contain_text("Not valid JSON")

    headers.fill('{"X-Team": "billing"}')
    expect(error).to_be_hidden()
    with sent_create(page) as created:
        page.get_by_test_id("task-save").click()
    expect(toast(page, "success", f"Created “{name}”")).to_be_visible()
    assert created["config"]["headers"] == {"X-Team": "billing"}
    task_id = int(str(search_for(page, name).get_attribute("data-task-id")))
    assert rest.get_task(task_id)["config"]["headers"] == {"X-Team": "billing"}

    search_for(page, name).get_by_test_id("edit").click()
    expect(page.get_by_test_id("config-headers")).to_have_value('{\n  "X-Team": "billing"\n}')
    page.get_by_test_id("task-cancel").click()


def test_run_settings_owner_and_labels_are_saved_shown_and_only_their_changes_sent(
    page: Page, rest: RestClient
) -> None:
    name = unique("Tuned report")
    dialog = open_add_dialog(page)
    dialog.get_by_label("Name").fill(name)
    dialog.get_by_label("Task type").select_option(label="Report Publishing")
    dialog.get_by_label("Report").select_option(label="Billing Summary")
    advanced = page.get_by_test_id("advanced-settings")
    expect(page.get_by_test_id("task-max-attempts")).to_be_hidden()  # tucked away until asked for
    advanced.locator("summary").click()
    expect(page.get_by_test_id("task-max-attempts")).to_have_attribute("placeholder", "Default: 3")
    page.get_by_test_id("task-max-attempts").fill("5")
    page.get_by_test_id("task-retry-delay").fill("30")
    page.get_by_test_id("task-time-limit").fill("60")
    page.get_by_test_id("task-owner").fill("billing-oncall@example.com")
    page.get_by_test_id("task-labels").fill("team=billing\noops")
    page.get_by_test_id("task-save").click()
    expect(dialog.locator('[data-error-for="labels"]')).to_contain_text("Line 2 (“oops”) is not key=value.")
    page.get_by_test_id("task-labels").fill("team=billing\ntier=1")
    screenshot(page, "add-dialog-advanced")
    with sent_create(page) as created:
        page.get_by_test_id("task-save").click()
    expect(toast(page, "success", f"Created “{name}”")).to_be_visible()
    assert {
        key: created[key] for key in ("maxAttempts", "retryBaseDelayMs", "timeLimitS", "owner", "labels")
    } == {
        "maxAttempts": 5,
        "retryBaseDelayMs": 30_000,
        "timeLimitS": 60,
        "owner": "billing-oncall@example.com",
        "labels": {"team": "billing", "tier": "1"},
    }

    row = search_for(page, name)
    task = rest.get_task(int(str(row.get_attribute("data-task-id"))))
    assert (task["maxAttempts"], task["retryBaseDelayMs"], task["timeLimitS"]) == (5, 30_000, 60)
    expect(row.get_by_test_id("row-owner")).to_have_text("billing-oncall@example.com")
    expect(row.get_by_test_id("row-label")).to_have_text(["teambilling", "tier1"])

    # The section opens on a schedule that sets any of it; emptying a field sends null (the default) alone.
    row.get_by_test_id("edit").click()
    expect(page.get_by_test_id("task-max-attempts")).to_be_visible()
    expect(page.get_by_test_id("task-max-attempts")).to_have_value("5")
    expect(page.get_by_test_id("task-retry-delay")).to_have_value("30")
    expect(page.get_by_test_id("task-labels")).to_have_value("team=billing\ntier=1")
    page.get_by_test_id("task-max-attempts").fill("")
    with sent_update(page) as sent:
        page.get_by_test_id("task-save").click()
    expect(toast(page, "success", f"Saved “{name}”")).to_be_visible()
    assert sent == {"maxAttempts": None}
    assert rest.get_task(task["id"])["maxAttempts"] is None
    assert rest.get_task(task["id"])["timeLimitS"] == 60


def test_the_label_filter_and_pause_matching_pause_exactly_the_matching_tasks(
    page: Page, rest: RestClient
) -> None:
    batch = uuid.uuid4().hex[:8]
    billing = [
        rest.create_task(unique(f"Billing {number}"), labels={"batch": batch, "team": "billing"})
        for number in range(3)
    ]
    search = rest.create_task(unique("Search"), labels={"batch": batch, "team": "search"}, owner="bob")
    expect(page.get_by_test_id("pause-matching")).to_be_hidden()  # no filter: nothing to act on in bulk

    page.get_by_test_id("filter-label").fill(f"batch={batch}, team=billing")
    expect(page.get_by_test_id("task-range")).to_have_text("1–3 of 3")
    assert f"label=batch%3D{batch}" in page.url and "label=team%3Dbilling" in page.url
    page.get_by_test_id("pause-matching").click()
    confirm = page.get_by_test_id("confirm-dialog")
    expect(confirm.get_by_role("heading")).to_have_text("Pause 3 tasks?")
    expect(confirm.get_by_test_id("confirm-count")).to_have_text("3 tasks")
    expect(confirm.get_by_test_id("confirm-filters")).to_have_text(f"label batch={batch}, label team=billing")
    screenshot(page, "pause-matching-confirmation")
    with page.expect_request(lambda request: "/api/scheduler/tasks/pause" in request.url) as paused:
        page.get_by_test_id("confirm-ok").click()
    assert "label=batch%3D" + batch in paused.value.url and "label=team%3Dbilling" in paused.value.url
    expect(toast(page, "success", "Paused 3 tasks.")).to_be_visible()
    expect(page.get_by_test_id("task-enabled-state")).to_have_text(["Disabled"] * 3)
    screenshot(page, "task-table-labels-owner")
    assert [rest.get_task(task["id"])["enabled"] for task in billing] == [False] * 3
    assert rest.get_task(search["id"])["enabled"] is True

    page.get_by_test_id("resume-matching").click()
    expect(confirm.get_by_role("heading")).to_have_text("Resume 3 tasks?")
    page.get_by_test_id("confirm-ok").click()
    expect(toast(page, "success", "Resumed 3 tasks.")).to_be_visible()
    assert [rest.get_task(task["id"])["enabled"] for task in billing] == [True] * 3

    # A label chip narrows the list to its label; the owner filter too.
    page.get_by_role("button", name="Clear filters").click()
    page.get_by_test_id("filter-owner").fill("bob")
    page.get_by_test_id("filter-search").fill(search["name"])
    row = task_row(page, search["name"])
    expect(page.get_by_test_id("task-row")).to_have_count(1)
    row.get_by_test_id("row-label").filter(has_text="search").click()
    expect(page.get_by_test_id("filter-label")).to_have_value("team=search")
    expect(page.get_by_test_id("task-row")).to_have_count(1)


def test_history_shows_a_runs_output_and_the_config_a_run_now_carried(page: Page, rest: RestClient) -> None:
    name = unique("Appends lines")
    path = Path(f"/tmp/cronwork-e2e-{uuid.uuid4().hex}.txt")
    task = rest.create_task(
        name,
        taskType="example_append_line",
        scheduleType="manual",
        cronExpression=None,
        config={"path": str(path)},
    )
    try:
        rest.run_now(task["id"])
        rest.wait_until_runs_finish(task["id"], 1)
        rest.call("POST", f"/api/scheduler/tasks/{task['id']}/run", {"config": {"line": "just once"}})
        rest.wait_until_runs_finish(task["id"], 2)
    finally:
        path.unlink(missing_ok=True)

    search_for(page, name).get_by_test_id("history").click()
    history = page.get_by_test_id("history-dialog")
    newest, oldest = (
        history.get_by_test_id("history-row").nth(0),
        history.get_by_test_id("history-row").nth(1),
    )
    expect(newest).to_have_attribute("data-status", "success")
    expect(newest.get_by_test_id("run-override-note")).to_have_text("with config override")
    expect(oldest.get_by_test_id("run-override-note")).to_have_count(0)

    details = history.get_by_test_id("history-detail")
    expect(details.first).to_be_hidden()
    newest.get_by_test_id("history-expand").click()
    expect(details.nth(0).get_by_test_id("history-output")).to_have_text("Outputappended 9 characters")
    expect(details.nth(0).get_by_test_id("history-override")).to_contain_text('"line": "just once"')
    oldest.get_by_test_id("history-expand").click()
    expect(details.nth(1).get_by_test_id("history-output")).to_contain_text(
        re.compile(r"appended \d+ characters")
    )
    expect(details.nth(1).get_by_test_id("history-override")).to_have_count(0)
    screenshot(page, "history-dialog-output")


def test_backfill_from_the_history_queues_each_past_slot_once(
    page: Page, rest: RestClient, console: ConsoleWatch
) -> None:
    console.allow("status of 422")  # Chromium logs every 4xx answer; the window in the future provokes one
    name = unique("Backfilled report")
    task = rest.create_task(name, cronExpression="*/15 * * * *", timezone="UTC")
    to = (datetime.now(UTC) - timedelta(hours=1)).replace(second=0, microsecond=0)
    start = to - timedelta(hours=1)
    minutes = (start + timedelta(minutes=m) for m in range(61))
    slots = [
        instant for instant in minutes if instant.minute % 15 == 0
    ]  # its quarter hours, both ends included

    def typed(instant: datetime) -> str:
        """As the viewer types it: a datetime-local value in their own zone."""
        return instant.astimezone(ZoneInfo(VIEWER_TIMEZONE)).strftime("%Y-%m-%dT%H:%M")

    search_for(page, name).get_by_test_id("history").click()
    history = page.get_by_test_id("history-dialog")
    history.get_by_test_id("backfill-toggle").click()
    form = history.get_by_test_id("backfill-form")
    expect(form).to_contain_text(VIEWER_TIMEZONE)
    history.get_by_test_id("backfill-from").fill(typed(start))
    history.get_by_test_id("backfill-to").fill(typed(to))
    screenshot(page, "history-backfill")
    history.get_by_test_id("backfill-submit").click()

    result = history.get_by_test_id("backfill-result")
    expect(result).to_have_text(f"Queued {len(slots)} runs for {len(slots)} slots.")
    expect(form).to_be_hidden()
    backfilled = history.get_by_test_id("history-row").filter(
        has=page.get_by_test_id("run-trigger").filter(has_text="Backfill")
    )
    expect(backfilled).to_have_count(len(slots))
    runs = rest.call(
        "GET", f"/api/scheduler/history?scheduleId={task['id']}&triggeredBy=backfill&page_size=100"
    )
    wire = [slot.isoformat(timespec="milliseconds").replace("+00:00", "Z") for slot in slots]
    assert sorted(run["scheduledFor"] for run in runs) == wire
    assert {run["attempt"] for run in runs} == {1}

    # The same window again (the form keeps it): every slot already has its run.
    history.get_by_test_id("backfill-toggle").click()
    history.get_by_test_id("backfill-submit").click()
    expect(result).to_have_text(f"Nothing queued: all {len(slots)} slots already had a run.")

    # A window that reaches into the future is refused beside the field, and queues nothing.
    history.get_by_test_id("backfill-toggle").click()
    history.get_by_test_id("backfill-to").fill(typed(datetime.now(UTC) + timedelta(hours=2)))
    history.get_by_test_id("backfill-submit").click()
    expect(form.locator('[data-error-for="to"]')).to_contain_text("must not be in the future")
    expect(history.get_by_test_id("backfill-to")).to_have_attribute("aria-invalid", "true")
    assert len(
        rest.call("GET", f"/api/scheduler/history?scheduleId={task['id']}&triggeredBy=backfill")
    ) == len(slots)
    page.keyboard.press("Escape")

    # A task with no slots (manual) offers no backfill.
    manual = unique("No slots")
    rest.create_task(manual, scheduleType="manual", cronExpression=None)
    search_for(page, manual).get_by_test_id("history").click()
    expect(history).to_be_visible()
    expect(history.get_by_test_id("backfill-toggle")).to_be_hidden()


def test_start_and_end_are_typed_in_the_viewers_zone_previewed_and_sent_only_when_changed(
    page: Page, rest: RestClient
) -> None:
    name = unique("Bounded report")
    dialog = open_add_dialog(page)
    dialog.get_by_label("Name").fill(name)
    dialog.get_by_label("Task type").select_option(label="Report Publishing")
    dialog.get_by_label("Report").select_option(label="Billing Summary")
    page.get_by_test_id("cron-preset").filter(has_text="Weekdays at 09:00").click()
    page.get_by_test_id("advanced-settings").locator("summary").click()
    expect(page.get_by_test_id("task-bounds-zone")).to_contain_text(f"your time zone ({VIEWER_TIMEZONE})")
    page.get_by_test_id("task-start-at").fill("2031-03-05T10:30")  # a Wednesday, after its 09:00
    page.get_by_test_id("task-end-at").fill("2031-03-01T00:00")
    page.get_by_test_id("task-save").click()
    expect(dialog.locator('[data-error-for="endAt"]')).to_have_text("The end must be after the start.")

    page.get_by_test_id("task-end-at").fill("2031-12-31T17:00")
    # The preview lists runs from the start on: Thursday 6 March is the first weekday 09:00 after it.
    expect(page.get_by_test_id("cron-next-run").first).to_contain_text("Thu 6 Mar, 09:00")
    screenshot(page, "add-dialog-start-and-end")
    with sent_create(page) as created:
        page.get_by_test_id("task-save").click()
    expect(toast(page, "success", f"Created “{name}”")).to_be_visible()
    # New York is five hours behind UTC in March and in December.
    assert (created["startAt"], created["endAt"]) == ("2031-03-05T15:30:00.000Z", "2031-12-31T22:00:00.000Z")
    row = search_for(page, name)
    task = rest.get_task(int(str(row.get_attribute("data-task-id"))))
    assert task["nextRunAt"] == "2031-03-06T14:00:00.000Z"

    # An edit opens the section on the bounds as typed, and sends only what changed.
    row.get_by_test_id("edit").click()
    expect(page.get_by_test_id("task-start-at")).to_be_visible()
    expect(page.get_by_test_id("task-start-at")).to_have_value("2031-03-05T10:30")
    expect(page.get_by_test_id("task-end-at")).to_have_value("2031-12-31T17:00")
    dialog.get_by_label("Name").fill(f"{name} renamed")
    with sent_update(page) as renamed:
        page.get_by_test_id("task-save").click()
    expect(toast(page, "success", f"Saved “{name} renamed”")).to_be_visible()
    assert renamed == {"name": f"{name} renamed"}

    search_for(page, f"{name} renamed").get_by_test_id("edit").click()
    page.get_by_test_id("task-end-at").fill("")
    with sent_update(page) as unbounded:
        page.get_by_test_id("task-save").click()
    expect(dialog).to_be_hidden()
    assert unbounded == {"endAt": None}
    assert rest.get_task(task["id"])["endAt"] is None


def test_a_task_past_its_end_says_why_it_has_no_next_run(page: Page, rest: RestClient) -> None:
    name = unique("Ended report")
    rest.create_task(name, endAt="2026-01-31T00:00:00Z")

    row = search_for(page, name)

    expect(row.get_by_test_id("task-next-run")).to_have_text(
        "Ended at 2026-01-31T00:00:00Z: no slot after its end"
    )
    expect(row.get_by_test_id("task-schedule")).to_have_text(
        "At 09:00, Monday through Friday, until 2026-01-31T00:00:00Z"
    )


# ---- policies: missed slots, overlap, jitter, the repeated hour; missed entries; broken timings ----------------


@pytest.fixture
def database(live_system: Any) -> Any:
    """Runs one statement on the live system's database, behind the API: a ledger entry only a worker outage
    makes, a timing a later library refuses."""

    def execute(statement: str, params: tuple[Any, ...]) -> None:
        with psycopg.connect(live_system.database_url) as connection:
            connection.execute(statement, params)

    return execute


def preview(rest: RestClient, **query: Any) -> dict[str, Any]:
    return dict(rest.call("GET", f"/api/scheduler/cron/preview?{urllib.parse.urlencode(query)}"))


def test_catch_up_shows_its_cap_and_window_sends_them_and_the_servers_reason_sits_under_the_cap(
    page: Page, rest: RestClient, console: ConsoleWatch
) -> None:
    console.allow("status of 422")  # Chromium logs every 4xx answer; the missing cap provokes one on purpose
    name = unique("Catching up report")
    dialog = open_add_dialog(page)
    dialog.get_by_label("Name").fill(name)
    dialog.get_by_label("Task type").select_option(label="Report Publishing")
    dialog.get_by_label("Report").select_option(label="Billing Summary")
    page.get_by_test_id("advanced-settings").locator("summary").click()
    misfire = page.get_by_test_id("task-misfire-policy")
    expect(misfire).to_have_value("coalesce")
    expect(page.get_by_test_id("task-misfire-policy-hint")).to_contain_text(
        "run once, as one run of the latest"
    )
    catch_up = page.get_by_test_id("catch-up-fields")
    expect(catch_up).to_be_hidden()

    misfire.select_option("catchUp")
    expect(catch_up).to_be_visible()
    expect(page.get_by_test_id("task-misfire-policy-hint")).to_contain_text("oldest first, up to the cap")
    page.get_by_test_id("task-catch-up-window").fill("7200")
    expect(page.get_by_test_id("task-catch-up-window-hint")).to_have_text(
        "Only missed slots at most 7,200 s old (2h 00m) run."
    )
    page.get_by_test_id("task-save").click()  # no cap: the server says it is required, under the cap
    cap_error = dialog.locator('[data-error-for="catchUpMax"]')
    expect(cap_error).to_have_text("is required when the misfire policy is catchUp")
    expect(page.get_by_test_id("task-catch-up-max")).to_have_attribute("aria-invalid", "true")
    expect(dialog.locator('[data-error-for="catchUpWindowS"]')).to_be_hidden()
    expect(dialog).to_be_visible()
    screenshot(page, "add-dialog-catch-up-error")

    page.get_by_test_id("task-catch-up-max").fill("5")
    expect(cap_error).to_be_hidden()
    with sent_create(page) as created:
        page.get_by_test_id("task-save").click()
    expect(toast(page, "success", f"Created “{name}”")).to_be_visible()
    assert {key: created[key] for key in ("misfirePolicy", "catchUpMax", "catchUpWindowS")} == {
        "misfirePolicy": "catchUp",
        "catchUpMax": 5,
        "catchUpWindowS": 7200,
    }
    row = search_for(page, name)
    task = rest.get_task(int(str(row.get_attribute("data-task-id"))))
    assert (task["misfirePolicy"], task["catchUpMax"], task["catchUpWindowS"]) == ("catchUp", 5, 7200)

    # Reopened: the section opens on the policy, as saved; another policy sends the cap and window as null.
    row.get_by_test_id("edit").click()
    expect(misfire).to_be_visible()
    expect(misfire).to_have_value("catchUp")
    expect(page.get_by_test_id("task-catch-up-max")).to_have_value("5")
    expect(page.get_by_test_id("task-catch-up-window")).to_have_value("7200")
    misfire.select_option("skip")
    expect(catch_up).to_be_hidden()
    expect(page.get_by_test_id("task-misfire-policy-hint")).to_contain_text("are not run")
    with sent_update(page) as sent:
        page.get_by_test_id("task-save").click()
    expect(toast(page, "success", f"Saved “{name}”")).to_be_visible()
    assert sent == {"misfirePolicy": "skip", "catchUpMax": None, "catchUpWindowS": None}
    task = rest.get_task(task["id"])
    assert (task["misfirePolicy"], task["catchUpMax"], task["catchUpWindowS"]) == ("skip", None, None)


def test_overlap_skip_and_jitter_round_trip_and_the_preview_shows_when_each_run_starts(
    page: Page, rest: RestClient
) -> None:
    name = unique("Jittered report")
    dialog = open_add_dialog(page)
    dialog.get_by_label("Name").fill(name)
    dialog.get_by_label("Task type").select_option(label="Report Publishing")
    dialog.get_by_label("Report").select_option(label="Billing Summary")
    page.get_by_test_id("cron-preset").filter(has_text="Weekdays at 09:00").click()
    dialog.get_by_label("Time zone").fill("UTC")
    page.get_by_test_id("advanced-settings").locator("summary").click()
    page.get_by_test_id("task-overlap-policy").select_option("skip")
    expect(page.get_by_test_id("task-overlap-policy-hint")).to_contain_text("recorded as skipped")
    page.get_by_test_id("task-jitter").fill("45")
    # A task not saved yet has no offsets: the preview says how late a run may start.
    expect(page.get_by_test_id("cron-jitter-note")).to_contain_text("starts up to 45 s after each slot")
    expect(page.get_by_test_id("cron-run-start")).to_have_count(0)
    with sent_create(page) as created:
        page.get_by_test_id("task-save").click()
    expect(toast(page, "success", f"Created “{name}”")).to_be_visible()
    assert (created["overlapPolicy"], created["jitterS"]) == ("skip", 45)

    row = search_for(page, name)
    task = rest.get_task(int(str(row.get_attribute("data-task-id"))))
    assert (task["overlapPolicy"], task["jitterS"]) == ("skip", 45)
    delay = parse_instant(task["nextRunStartsAt"]) - parse_instant(task["nextRunAt"])
    assert timedelta(0) < delay <= timedelta(seconds=45)
    starts = parse_instant(task["nextRunStartsAt"]).astimezone(ZoneInfo(VIEWER_TIMEZONE))
    expect(row.get_by_test_id("task-next-start")).to_have_text(re.compile(rf"^starts .*{starts:%H:%M:%S}$"))

    # Reopened: both as saved; the preview asks with the task's id, so it lists when each run really starts.
    row.get_by_test_id("edit").click()
    expect(page.get_by_test_id("task-overlap-policy")).to_be_visible()
    expect(page.get_by_test_id("task-overlap-policy")).to_have_value("skip")
    expect(page.get_by_test_id("task-jitter")).to_have_value("45")
    runs = page.get_by_test_id("cron-next-run")
    expect(runs).to_have_count(5)
    expect(page.get_by_test_id("cron-run-start")).to_have_count(5)
    expect(page.get_by_test_id("cron-jitter-note")).to_have_count(0)
    first_slot = parse_instant(str(runs.first.get_attribute("data-slot")))
    answer = preview(
        rest,
        expression="0 9 * * 1-5",
        timezone="UTC",
        jitterS=45,
        taskId=task["id"],
        after=(first_slot - timedelta(seconds=1)).isoformat(),
    )
    shown = runs.evaluate_all(
        "rows => rows.map(row => [row.dataset.slot, row.querySelector('[data-starts-at]').dataset.startsAt])"
    )
    assert shown == [list(pair) for pair in zip(answer["nextRuns"], answer["startsAt"], strict=True)]
    first_start = parse_instant(answer["startsAt"][0])
    expect(runs.first.locator("td").first).to_contain_text(f"09:00 → starts {first_start:%H:%M:%S}")
    page.get_by_test_id("cron-preview").scroll_into_view_if_needed()
    screenshot(page, "edit-dialog-jitter-preview")

    # A rename sends the name alone: the policies nobody touched stay as they are.
    renamed = f"{name} renamed"
    dialog.get_by_label("Name").fill(renamed)
    with sent_update(page) as sent:
        page.get_by_test_id("task-save").click()
    expect(toast(page, "success", f"Saved “{renamed}”")).to_be_visible()
    assert sent == {"name": renamed}

    search_for(page, renamed).get_by_test_id("edit").click()
    page.get_by_test_id("task-overlap-policy").select_option("allow")
    page.get_by_test_id("task-jitter").fill("")
    expect(page.get_by_test_id("cron-run-start")).to_have_count(0)  # no jitter: each run starts on its slot
    with sent_update(page) as sent:
        page.get_by_test_id("task-save").click()
    expect(page.get_by_test_id("task-dialog")).to_be_hidden()  # closed once the server answered
    expect(toast(page, "success", f"Saved “{renamed}”").last).to_be_visible()
    assert sent == {"overlapPolicy": "allow", "jitterS": 0}
    task = rest.get_task(task["id"])
    assert (task["overlapPolicy"], task["jitterS"]) == ("allow", 0)
    assert parse_instant(task["nextRunStartsAt"]) == parse_instant(task["nextRunAt"])


def test_dst_both_previews_the_repeated_hour_of_a_fall_back_night_twice(page: Page) -> None:
    name = unique("Half past one")
    dialog = open_add_dialog(page)
    dialog.get_by_label("Name").fill(name)
    dialog.get_by_label("Task type").select_option(label="Report Publishing")
    dialog.get_by_label("Report").select_option(label="Billing Summary")
    page.get_by_test_id("cron-expression").fill("30 1 * * *")
    dialog.get_by_label("Time zone").fill("America/New_York")
    # The page previews from now on, so the next fall-back night (7 November 2027) is reached by a start bound
    # the day before it, after that day's 01:30, as the viewer types it (in New York).
    page.get_by_test_id("advanced-settings").locator("summary").click()
    page.get_by_test_id("task-start-at").fill("2027-11-06T12:00")
    dst = page.get_by_test_id("task-dst-policy")
    expect(dst).to_have_value("once")
    runs = page.get_by_test_id("cron-next-run")
    expect(runs.nth(0)).to_have_attribute("data-slot", "2027-11-07T05:30:00.000Z")
    expect(runs.nth(1)).to_have_attribute("data-slot", "2027-11-08T06:30:00.000Z")

    dst.select_option("both")
    expect(page.get_by_test_id("task-dst-policy-hint")).to_contain_text("runs each time it comes: twice")
    expect(runs.nth(0)).to_have_attribute("data-slot", "2027-11-07T05:30:00.000Z")
    expect(runs.nth(1)).to_have_attribute("data-slot", "2027-11-07T06:30:00.000Z")
    expect(runs.nth(2)).to_have_attribute("data-slot", "2027-11-08T06:30:00.000Z")
    # The same wall time twice: each with the zone's offset at that instant, which tells them apart.
    first, second = (runs.nth(index).locator("td").first.inner_text() for index in (0, 1))
    assert first.startswith("Sun 7 Nov, 01:30 ") and second.startswith("Sun 7 Nov, 01:30 "), (first, second)
    assert first != second
    page.get_by_test_id("cron-preview").scroll_into_view_if_needed()
    screenshot(page, "add-dialog-dst-both")

    # Only cron has a repeated hour to decide.
    page.get_by_test_id("schedule-type-interval").check()
    expect(dst).to_be_hidden()
    page.get_by_test_id("schedule-type-cron").check()
    expect(dst).to_be_visible()
    expect(dst).to_have_value("both")
    expect(runs.nth(1)).to_have_attribute("data-slot", "2027-11-07T06:30:00.000Z")
    with sent_create(page) as created:
        page.get_by_test_id("task-save").click()
    expect(toast(page, "success", f"Created “{name}”")).to_be_visible()
    assert created["dstPolicy"] == "both"
    search_for(page, name).get_by_test_id("edit").click()
    expect(dst).to_have_value("both")
    page.get_by_test_id("task-cancel").click()


def test_history_shows_a_missed_entrys_span_and_reason_and_the_outcome_filter_narrows_to_it(
    page: Page, rest: RestClient, database: Any
) -> None:
    name = unique("Missed a month")
    task = rest.create_task(name, cronExpression="* * * * *", timezone=VIEWER_TIMEZONE, enabled=False)
    rest.run_now(task["id"])
    rest.wait_until_runs_finish(task["id"], 1)
    # What a month without workers leaves: one entry for its 43,260 minutes (November's 30 days and the hour its
    # fall-back night repeats), and a slot the overlap policy skipped. Neither is an attempt.
    first, last = datetime(2026, 11, 1, 4, 0, tzinfo=UTC), datetime(2026, 12, 1, 4, 59, tzinfo=UTC)
    insert = """
        INSERT INTO task_run_history (schedule_id, schedule_name, task_type, status, triggered_by, scheduled_for,
                                      last_slot, missed_slots, queued_at, due_at, completed_at, attempt,
                                      error_message)
        VALUES (%s, %s, 'report_publish', %s, 'schedule', %s, %s, %s, now(), now(), now(), 0, %s)
    """
    database(
        insert,
        (task["id"], name, "missed", first, last, 43_260, "passed unclaimed; misfire policy coalesce"),
    )
    skip_reason = "overlap policy skip: run 1 of this schedule was still queued or running"
    skipped_slot = datetime(2026, 12, 2, 14, 0, tzinfo=UTC)
    database(insert, (task["id"], name, "skipped", skipped_slot, None, 0, skip_reason))

    search_for(page, name).get_by_test_id("history").click()
    history = page.get_by_test_id("history-dialog")
    rows = history.get_by_test_id("history-row")
    expect(rows).to_have_count(3)
    skipped, missed, success = rows.nth(0), rows.nth(1), rows.nth(2)
    expect(missed).to_have_attribute("data-status", "missed")
    expect(missed.get_by_test_id("run-status")).to_have_text("Missed")
    # The viewer's New York: the first slot is midnight on 1 November, the last 23:59 on 30 November.
    expect(missed.get_by_test_id("history-missed-span")).to_have_text(
        "missed 43,260 slots: 2026-11-01 00:00 → 2026-11-30 23:59"
    )
    # Nothing started: the reason stands where a run's start, duration and attempt would (never "attempt 0").
    expect(missed.get_by_test_id("history-reason")).to_have_text("passed unclaimed; misfire policy coalesce")
    expect(missed.get_by_test_id("history-attempt")).to_have_count(0)
    expect(missed.locator("td")).to_have_count(4)
    expect(skipped.get_by_test_id("run-status")).to_have_text("Skipped")
    expect(skipped.get_by_test_id("history-reason")).to_have_text(skip_reason)
    expect(skipped.get_by_test_id("history-attempt")).to_have_count(0)
    expect(history.locator("tbody")).not_to_contain_text("attempt 0")
    expect(success.get_by_test_id("run-status")).to_have_text("Success")
    expect(success.get_by_test_id("history-attempt")).to_have_text("1")
    expect(success.get_by_test_id("history-reason")).to_have_count(0)

    # Each outcome its own badge: missed in the warning colour, outlined; skipped grey, outlined; success green.
    def style(row: Locator, property_name: str) -> str:
        return str(
            row.get_by_test_id("run-status").evaluate(
                "(badge, name) => getComputedStyle(badge)[name]", property_name
            )
        )

    assert colour_family(style(missed, "color")).startswith("other")  # the warning's orange
    assert colour_family(style(skipped, "color")) == "grey"
    assert colour_family(style(success, "color")) == "green"
    assert style(missed, "boxShadow") != "none" and style(skipped, "boxShadow") != "none"
    assert style(missed, "backgroundColor") == "rgba(0, 0, 0, 0)"
    screenshot(page, "history-missed-and-skipped")

    outcome = history.get_by_test_id("history-status-filter")
    expect(outcome).to_have_value("")
    with page.expect_request(
        lambda request: "/api/scheduler/history" in request.url and "status=" in request.url
    ) as narrowed:
        outcome.select_option(label="Missed")
    assert "status=missed" in narrowed.value.url
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-status", "missed")
    expect(history.get_by_test_id("history-range")).to_have_text("1–1 of 1")
    outcome.select_option(label="Skipped")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-status", "skipped")
    outcome.select_option(label="Failed")
    expect(history.get_by_test_id("history-empty")).to_contain_text("No failed entries.")
    outcome.select_option(label="All outcomes")
    expect(rows).to_have_count(3)

    # The filter starts at every outcome for each history opened.
    outcome.select_option(label="Missed")
    expect(rows).to_have_count(1)
    page.keyboard.press("Escape")
    search_for(page, name).get_by_test_id("history").click()
    expect(outcome).to_have_value("")
    expect(rows).to_have_count(3)


def test_a_broken_task_shows_its_badge_and_reason_instead_of_a_next_run_and_an_edit_mends_it(
    page: Page, rest: RestClient, database: Any, console: ConsoleWatch
) -> None:
    console.allow("status of 422")  # the editor's preview asks about the stored zone: the server refuses it
    name = unique("Broken by an upgrade")
    task = rest.create_task(name)
    # A zone a later tz database no longer knows, as an upgrade could leave one behind.
    database("UPDATE task_schedules SET timezone = 'Mars/Olympus_Mons' WHERE id = %s", (task["id"],))
    broken = rest.get_task(task["id"])
    assert broken["brokenReason"] and broken["description"] == "Broken"

    row = search_for(page, name)
    expect(row.get_by_test_id("task-broken")).to_have_text("Broken")
    reason = broken["brokenReason"]
    expect(row.get_by_test_id("task-broken-reason")).to_have_text(reason[0].upper() + reason[1:])
    expect(row.get_by_test_id("task-broken-reason")).to_contain_text("Mars/Olympus_Mons")
    expect(row.get_by_test_id("task-next-run")).to_have_count(0)  # not the slot it can no longer keep
    expect(row.get_by_test_id("task-schedule")).to_have_text("Broken")
    screenshot(page, "task-table-broken")

    row.get_by_test_id("edit").click()
    dialog = page.get_by_test_id("task-dialog")
    expect(dialog.get_by_label("Time zone")).to_have_value("Mars/Olympus_Mons")
    expect(dialog.locator('[data-error-for="timezone"]')).to_contain_text("Unknown time zone")
    dialog.get_by_label("Time zone").fill("Europe/Berlin")
    expect(page.get_by_test_id("cron-next-run")).to_have_count(5)
    with sent_update(page) as sent:
        page.get_by_test_id("task-save").click()
    expect(toast(page, "success", f"Saved “{name}”")).to_be_visible()
    assert sent == {"timezone": "Europe/Berlin"}
    expect(row.get_by_test_id("task-broken")).to_have_count(0)
    expect(row.get_by_test_id("task-next-run").locator(".time-relative")).to_have_text(re.compile(r"^in \d+"))
    assert rest.get_task(task["id"])["brokenReason"] is None


# ---- security headers: the page works under its Content-Security-Policy ------------------------------------

WATCH_CSP = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) =>
  window.cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`),
);
"""


def test_the_page_and_swagger_ui_work_under_their_content_security_policy(
    page: Page, rest: RestClient, live_system: Any, console: ConsoleWatch
) -> None:
    """Every answer carries a policy with no inline script or style: the page (its theme script a file), its
    editor (which loads the task itself: the list carries no configs) and Swagger UI run without a violation."""
    page.add_init_script(WATCH_CSP)
    name = unique("Under the policy")
    task = rest.create_task(name, config={"reportId": "usage-monthly"})
    tasks_url = live_system.base_url + "/api/scheduler/tasks"
    with page.expect_response(lambda answer: answer.url.startswith(tasks_url + "?")) as listed:
        answer = page.goto(live_system.base_url + "/")
    expect(page.locator("body")).to_have_attribute("data-ready", "true", timeout=15_000)
    assert answer is not None
    policy = answer.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy and "script-src 'self';" in policy
    assert "unsafe-inline" not in policy
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["referrer-policy"] == "no-referrer"
    assert all("config" not in task and "configSummary" in task for task in listed.value.json())
    # The theme was applied before the first paint, by its file.
    assert page.evaluate("document.documentElement.dataset.theme") in ("light", "dark")

    row = search_for(page, name)
    expect(row).to_contain_text("Monthly Usage Report")  # the list's configSummary
    with page.expect_request(f"{tasks_url}/{task['id']}"):
        row.get_by_test_id("edit").click()
    dialog = page.get_by_test_id("task-dialog")
    expect(dialog.get_by_label("Report")).to_have_value("usage-monthly")  # from GET /tasks/{id}
    expect(page.get_by_test_id("cron-next-run")).to_have_count(5)
    renamed = unique("Renamed under the policy")
    dialog.get_by_label("Name").fill(renamed)
    with sent_update(page) as sent:
        page.get_by_test_id("task-save").click()
    expect(toast(page, "success", f"Saved “{renamed}”")).to_be_visible()
    assert sent == {"name": renamed}
    row = search_for(page, renamed)
    row.get_by_test_id("history").click()
    expect(page.get_by_test_id("history-dialog")).to_be_visible()
    page.keyboard.press("Escape")
    page.get_by_test_id("theme-toggle").click()
    assert page.evaluate("window.cspViolations") == []

    # The policy is enforced, not only sent: an inline script is refused.
    console.allow("Executing inline script violates the following Content Security Policy directive")
    page.evaluate(
        """() => {
          const script = document.createElement("script");
          script.textContent = "window.inlineRan = true";
          document.head.append(script);
        }"""
    )
    page.wait_for_function("window.cspViolations.length > 0")
    assert page.evaluate("window.inlineRan") is None
    assert page.evaluate("window.cspViolations") == ["script-src-elem inline"]

    console.allow("status of 404")  # Swagger UI's page names no icon: the browser asks for /favicon.ico
    docs = page.goto(live_system.base_url + "/api/docs")
    assert docs is not None and "frame-ancestors 'none'" in docs.headers["content-security-policy"]
    expect(page.locator(".opblock").first).to_be_visible(timeout=15_000)
    page.locator(".opblock-summary").first.click()
    page.get_by_role("button", name="Try it out").first.click()
    page.get_by_role("button", name="Execute").first.click()
    expect(page.locator(".live-responses-table tbody .response-col_status").first).to_have_text("200")
    assert page.evaluate("window.cspViolations") == []
