"""The chart's alerts fire on the symptom each one names and stay quiet on a healthy system: the PrometheusRule is
rendered by the real helm, its groups checked and unit-tested by the real promtool on synthetic series (the
series the API, the workers and the beat export, with the labels the Prometheus Operator adds). Each alert has
its section in docs/operations.md, and the Grafana dashboard's queries parse and read the same metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.healing import pump
from shared.messaging import QUEUES, RUN_QUEUE, SYSTEM_QUEUE, TICK_QUEUE
from shared.system_tasks import SYSTEM_TASKS
from tests.deploy.conftest import REPO_ROOT, _run
from tests.deploy.test_chart import only

NAMESPACE = "default"  # the release namespace of `helm template` without --namespace
OPERATIONS = REPO_ROOT / "docs" / "operations.md"
# The metrics the services export, as agreed for issue 12 (docs/operations.md, "Alerts"): the rules and the
# dashboard may read these and no other, so that a misspelt name, which Prometheus would answer with nothing,
# fails here instead of leaving an alert that can never fire.
CONTRACT_METRICS = {
    # API, read from the database (or RabbitMQ) at each scrape
    "cronwork_schedules",
    "cronwork_schedules_overdue",
    "cronwork_schedules_failing_repeatedly",
    "cronwork_schedule_failure_streak_max",
    "cronwork_runs_unfinished",
    "cronwork_ticks_in_flight",
    "cronwork_slots_in_flight",
    "cronwork_tick_budget",
    "cronwork_system_task_last_run_timestamp_seconds",
    "cronwork_queue_messages",
    "cronwork_queue_consumers",
    "cronwork_http_requests_total",
    "cronwork_http_request_duration_seconds",
    # workers
    "cronwork_runs_started_total",
    "cronwork_runs_finished_total",
    "cronwork_slots_missed_total",
    "cronwork_slots_skipped_total",
    "cronwork_slot_lateness_seconds",
    "cronwork_pump_rearmed_total",
    "cronwork_pump_published_total",
    # beat
    "cronwork_beat_heartbeat_timestamp_seconds",
    # Dramatiq's Prometheus middleware, in the workers
    "dramatiq_messages_total",
    "dramatiq_message_errors_total",
    "dramatiq_message_retries_total",
    "dramatiq_message_rejects_total",
    "dramatiq_messages_inprogress",
    "dramatiq_delayed_messages_inprogress",
    "dramatiq_message_duration_milliseconds",
}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def _series(name: str, values: str, **labels: str) -> dict[str, str]:
    """One input series of a promtool test, in the release's namespace."""
    matchers = ", ".join(f'{key}="{value}"' for key, value in {"namespace": NAMESPACE, **labels}.items())
    return {"series": f"{name}{{{matchers}}}", "values": values}


def _lateness(per_minute: dict[str, int], pod: str) -> list[dict[str, str]]:
    """A lateness histogram's buckets, each counting ``per_minute`` observations more every minute (cumulative,
    as Prometheus buckets are), for 20 minutes."""
    return [
        _series("cronwork_slot_lateness_seconds_bucket", f"0+{count}x20", pod=pod, le=le)
        for le, count in per_minute.items()
    ]


# Per minute: 100 slots started, 90 within 1 s, 5 more within 30 s and 5 more within 60 s: p99 is 54 s (the
# 99th observation, interpolated in the 30-60 s bucket).
LATE = {"1": 90, "30": 95, "60": 100, "+Inf": 100}
ON_TIME = {"1": 100, "30": 100, "60": 100, "+Inf": 100}


LAST_RUN = "cronwork_system_task_last_run_timestamp_seconds"
HEARTBEAT = "cronwork_beat_heartbeat_timestamp_seconds"
PUMP_ID = next(task.id for task in SYSTEM_TASKS if task.work is pump)


def _consumers(per_queue: dict[str, int]) -> list[dict[str, str]]:
    """Each queue's consumers for 10 minutes, as both API replicas report them (read from RabbitMQ)."""
    return [
        _series("cronwork_queue_consumers", f"{count}x10", pod=pod, queue=queue)
        for queue, count in per_queue.items()
        for pod in ("api-a", "api-b")
    ]


def _no_consumers(queue: str) -> dict[str, Any]:
    return {
        "labels": {"queue": queue},
        "description": f"No worker consumes {queue}: its messages wait (no tick is claimed, or no run starts).",
    }


def _beat_down() -> dict[str, Any]:
    return {
        "labels": {},
        "description": "No beat heartbeat in the last 120s, or no beat is scraped at all: nothing sends the pump "
        "and the other system crons.",
    }


class Case:
    """One promtool unit test: input series, and the alerts expected firing at each time (none: quiet)."""

    def __init__(self, series: list[dict[str, str]], *expected: tuple[str, list[dict[str, Any]]]):
        self.series = series
        self.expected = expected


# alert -> {what the series show: Case}. An expected alert is its labels beyond severity and the alert labels,
# and its description (the rest of the annotations is static: checked against the rule below).
CASES: dict[str, dict[str, Case]] = {
    "CronworkScheduleFailingRepeatedly": {
        # Two API replicas report the same number (it is read from the database): one alert, not two.
        "two schedules fail, reported by both API replicas": Case(
            [
                _series("cronwork_schedules_failing_repeatedly", "0 0 2 2 2", pod="api-a"),
                _series("cronwork_schedules_failing_repeatedly", "0 0 2 2 2", pod="api-b"),
            ],
            ("1m", []),
            (
                "3m",
                [
                    {
                        "labels": {},
                        "description": "2 enabled schedule(s) have failed 3 or more times in a row (the page "
                        "shows which; each one's history has the errors).",
                    }
                ],
            ),
        ),
        "no schedule fails repeatedly": Case(
            [_series("cronwork_schedules_failing_repeatedly", "0x10", pod="api-a")], ("5m", [])
        ),
    },
    "CronworkSlotsMissed": {
        "a worker pod missed 3 slots": Case(
            [
                _series("cronwork_slots_missed_total", "0 0 0 3 3 3", pod="worker-a"),
                _series("cronwork_slots_missed_total", "0x5", pod="worker-b"),
            ],
            ("2m", []),
            (
                "5m",
                [
                    {
                        "labels": {},
                        "description": "About 3 slot(s) passed unclaimed in the last 15m, and their schedules' "
                        "misfire policy did not run them: workers down or behind, or ticks lost.",
                    }
                ],
            ),
        ),
        "slots were missed 20 minutes ago, none since": Case(
            [_series("cronwork_slots_missed_total", "0 4x25", pod="worker-a")], ("25m", [])
        ),
        "no slot missed, slots skipped": Case(
            [
                _series("cronwork_slots_missed_total", "0x10", pod="worker-a"),
                _series("cronwork_slots_skipped_total", "0+5x10", pod="worker-a"),
            ],
            ("10m", []),
        ),
    },
    "CronworkSlotsLate": {
        "p99 at 54 s for 15 minutes": Case(
            _lateness(LATE, "worker-a"),
            ("8m", []),  # above the threshold, but not yet for 10 minutes
            (
                "16m",
                [
                    {
                        "labels": {},
                        "description": "1 run in 100 started more than 54s after its slot (over 5m; the "
                        "threshold is 30s).",
                    }
                ],
            ),
        ),
        "every run within a second of its slot": Case(
            _lateness(ON_TIME, "worker-a") + _lateness(ON_TIME, "worker-b"), ("16m", [])
        ),
    },
    "CronworkPumpSilent": {
        # promtool's clock starts at the epoch: the pump last ran at 60 s and never again.
        "the pump last ran 6 minutes ago": Case(
            [
                _series(LAST_RUN, "60x10", pod="api-a", task=PUMP_ID),
                _series(LAST_RUN, "60x10", pod="api-b", task=PUMP_ID),
            ],
            ("5m", []),
            (
                "7m",
                [
                    {
                        "labels": {},
                        "description": "The pump last ran 6m 0s ago (it runs every minute): nothing publishes "
                        "the ticks entering the horizon or heals lost ones.",
                    }
                ],
            ),
        ),
        # The hourly retention task is as old, but only the pump's age counts.
        "the pump runs every minute": Case(
            [
                _series(LAST_RUN, "0+60x10", pod="api-a", task=PUMP_ID),
                _series(LAST_RUN, "60x10", pod="api-a", task="history_retention"),
            ],
            ("9m", []),
        ),
    },
    "CronworkTickBudgetNearlyFull": {
        "95% of the budget in flight for 12 minutes": Case(
            [
                _series("cronwork_ticks_in_flight", "9500x20", pod="api-a"),
                _series("cronwork_tick_budget", "10000x20", pod="api-a"),
                _series("cronwork_ticks_in_flight", "9500x20", pod="api-b"),
                _series("cronwork_tick_budget", "10000x20", pod="api-b"),
            ],
            ("9m", []),  # not yet for 10 minutes
            (
                "12m",
                [
                    {
                        "labels": {},
                        "description": "95% of the tick budget (TICK_BUDGET) is in flight; at the budget, slots "
                        "wait for room, earliest first.",
                    }
                ],
            ),
        ),
        "a 5-minute burst at 95%": Case(
            [
                _series("cronwork_ticks_in_flight", "9500x5 5000x15", pod="api-a"),
                _series("cronwork_tick_budget", "10000x20", pod="api-a"),
            ],
            ("15m", []),
        ),
        "half the budget in flight": Case(
            [
                _series("cronwork_ticks_in_flight", "5000x20", pod="api-a"),
                _series("cronwork_tick_budget", "10000x20", pod="api-a"),
            ],
            ("15m", []),
        ),
    },
    "CronworkNoConsumers": {
        f"no consumer on {TICK_QUEUE}": Case(
            _consumers({TICK_QUEUE: 0, RUN_QUEUE: 8, SYSTEM_QUEUE: 2}),
            ("4m", []),  # not yet for 5 minutes
            ("7m", [_no_consumers(TICK_QUEUE)]),
        ),
        f"no consumer on {RUN_QUEUE}": Case(
            _consumers({TICK_QUEUE: 2, RUN_QUEUE: 0, SYSTEM_QUEUE: 2}), ("7m", [_no_consumers(RUN_QUEUE)])
        ),
        # The system queue's consumers are watched through the pump (CronworkPumpSilent).
        "no worker at all": Case(
            _consumers(dict.fromkeys(QUEUES, 0)),
            ("7m", [_no_consumers(RUN_QUEUE), _no_consumers(TICK_QUEUE)]),
        ),
        "every queue consumed": Case(_consumers(dict.fromkeys(QUEUES, 1)), ("9m", [])),
    },
    "CronworkBeatDown": {
        # Both beats' heartbeats stop at 120 s: stale past 120 s from 5m, firing 2 minutes later.
        "both beats stopped": Case(
            [
                _series(HEARTBEAT, "0+60x2 120x10", pod="beat-a"),
                _series(HEARTBEAT, "0+60x2 120x10", pod="beat-b"),
            ],
            ("6m", []),
            ("8m", [_beat_down()]),
        ),
        "one beat of two stopped": Case(
            [_series(HEARTBEAT, "0+60x10", pod="beat-a"), _series(HEARTBEAT, "60x10", pod="beat-b")],
            ("9m", []),
        ),
        "no beat scraped at all": Case(
            [_series("cronwork_tick_budget", "10000x5", pod="api-a")], ("1m", []), ("3m", [_beat_down()])
        ),
    },
}


def _alerts(rule: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}


def _rules_file(rule: dict[str, Any], directory: Path) -> Path:
    """The PrometheusRule's groups as a Prometheus rules file, as the Operator hands them to Prometheus."""
    path = directory / "cronwork-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
    return path


def _promtool_test(rule: dict[str, Any], alert: str, case: Case, directory: Path) -> str:
    """Runs ``promtool test rules`` on one case; returns its output, asserting it passed."""
    rules_file = _rules_file(rule, directory)
    static = {k: v for k, v in _alerts(rule)[alert]["annotations"].items() if k != "description"}
    alert_labels = _alerts(rule)[alert]["labels"]
    unit = {
        "rule_files": [str(rules_file)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": case.series,
                "alert_rule_test": [
                    {
                        "eval_time": eval_time,
                        "alertname": alert,
                        "exp_alerts": [
                            {
                                "exp_labels": {**alert_labels, "namespace": NAMESPACE, **expected["labels"]},
                                "exp_annotations": {**static, "description": expected["description"]},
                            }
                            for expected in firing
                        ],
                    }
                    for eval_time, firing in case.expected
                ],
            }
        ],
    }
    unit_file = directory / "unit.yaml"
    unit_file.write_text(yaml.safe_dump(unit, sort_keys=False))
    result = _run(["promtool", "test", "rules", str(unit_file)])
    return result


@pytest.fixture(scope="module")
def rule(chart) -> dict[str, Any]:
    """The PrometheusRule with every alert on (ci-values-all-on.yaml: the defaults' thresholds)."""
    return only(chart.render_all_on(), "PrometheusRule")


def test_promtool_accepts_the_rules(rule, tmp_path):
    result = _run(["promtool", "check", "rules", str(_rules_file(rule, tmp_path))])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(CASES)} rules found" in result.stdout, result.stdout


def test_every_alert_is_unit_tested(rule):
    assert _alerts(rule).keys() == CASES.keys()


@pytest.mark.parametrize(
    ("alert", "situation"), [(alert, situation) for alert, cases in CASES.items() for situation in cases]
)
def test_an_alert_fires_on_its_symptom_and_not_on_a_healthy_system(rule, alert, situation, tmp_path):
    result = _promtool_test(rule, alert, CASES[alert][situation], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_fails_a_wrong_expectation(rule, tmp_path):
    """Guards the check itself: an alert expected on healthy series must fail the unit test."""
    healthy = CASES["CronworkBeatDown"]["one beat of two stopped"]
    wrong = Case(healthy.series, ("9m", [_beat_down()]))
    result = _promtool_test(rule, "CronworkBeatDown", wrong, tmp_path)
    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("assignment", "alert", "situation"),
    [
        ("slotsLate.thresholdSeconds=60", "CronworkSlotsLate", "p99 at 54 s for 15 minutes"),
        ("slotsLate.for=20m", "CronworkSlotsLate", "p99 at 54 s for 15 minutes"),
        (
            "tickBudgetNearlyFull.ratio=1",
            "CronworkTickBudgetNearlyFull",
            "95% of the budget in flight for 12 minutes",
        ),
        ("pumpSilent.thresholdSeconds=600", "CronworkPumpSilent", "the pump last ran 6 minutes ago"),
        ("noConsumers.for=10m", "CronworkNoConsumers", f"no consumer on {TICK_QUEUE}"),
        ("beatDown.thresholdSeconds=600", "CronworkBeatDown", "both beats stopped"),
        ("slotsMissed.window=2m", "CronworkSlotsMissed", "a worker pod missed 3 slots"),
    ],
)
def test_thresholds_come_from_values(chart, assignment, alert, situation, tmp_path):
    """With a laxer threshold, window or duration in values, the symptom that fires at the defaults stays quiet."""
    rule = only(chart.render_all_on(f"metrics.prometheusRule.alerts.{assignment}"), "PrometheusRule")
    sick = CASES[alert][situation]
    quiet = Case(sick.series, *[(eval_time, []) for eval_time, _ in sick.expected])
    result = _promtool_test(rule, alert, quiet, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alerts_are_optional_one_by_one(chart):
    assert [m for m in chart.render() if m["kind"] == "PrometheusRule"] == []
    rule = only(chart.render_all_on("metrics.prometheusRule.alerts.beatDown.enabled=false"), "PrometheusRule")
    assert _alerts(rule).keys() == CASES.keys() - {"CronworkBeatDown"}


def test_every_alert_reads_only_the_selected_series(chart):
    """Each metric in each alert is narrowed to the release's series (its namespace by default), so that two
    releases in one Prometheus do not alert for each other; a selector in values replaces the namespace."""
    for rule, matcher in [
        (only(chart.render_all_on(), "PrometheusRule"), f'namespace="{NAMESPACE}"'),
        (
            only(chart.render_all_on('metrics.prometheusRule.selector=job=~"cw-.*"'), "PrometheusRule"),
            'job=~"cw-.*"',
        ),
    ]:
        for alert, body in _alerts(rule).items():
            selectors = re.findall(r"\b(?:cronwork|dramatiq)_\w+(\{[^}]*\})?", body["expr"])
            assert selectors and all(matcher in s for s in selectors), (alert, body["expr"])


def test_the_pump_alert_reads_the_pump_system_task(rule):
    assert f'task="{PUMP_ID}"' in _alerts(rule)["CronworkPumpSilent"]["expr"]


def _anchors(markdown: str) -> set[str]:
    """The anchors of a Markdown file's headings, as GitHub and GitLab make them."""
    headings = re.findall(r"^#+ (.+)$", markdown, re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_every_alert_says_what_broke_and_where_its_runbook_is(rule):
    anchors = _anchors(OPERATIONS.read_text())
    base = "https://git.example.com/platform/cronwork/-/blob/main/docs/operations.md"  # ci-values-all-on.yaml
    for alert, body in _alerts(rule).items():
        assert body["labels"]["severity"] in {"critical", "warning"}, alert
        assert body["labels"]["team"] == "platform", alert  # metrics.prometheusRule.alertLabels
        annotations = body["annotations"]
        assert annotations["summary"] and annotations["description"], alert
        page, anchor = annotations["runbook"].split("#")
        assert (page, anchor) == ("docs/operations.md", alert.lower())
        assert anchor in anchors, f"docs/operations.md has no section {alert}"
        assert annotations["runbook_url"] == f"{base}#{anchor}", alert


def test_runbook_url_is_left_out_without_a_base(chart):
    rule = only(chart.render_all_on("metrics.prometheusRule.runbookBaseUrl="), "PrometheusRule")
    for alert, body in _alerts(rule).items():
        assert "runbook_url" not in body["annotations"], alert
        assert body["annotations"]["runbook"] == f"docs/operations.md#{alert.lower()}"


# --- the dashboard ---------------------------------------------------------------------------------------

DASHBOARD = REPO_ROOT / "deploy" / "helm" / "cronwork" / "files" / "cronwork-dashboard.json"
# Grafana's variables, as Prometheus would see them once Grafana has replaced them.
GRAFANA_VARIABLES = {"$namespace": NAMESPACE, "$__rate_interval": "5m"}


def _dashboard_queries() -> dict[str, str]:
    """Each query of the dashboard, by panel title and refId."""
    dashboard = json.loads(DASHBOARD.read_text())
    return {
        f"{panel['title']} {target['refId']}": target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    }


def _metrics_in(expr: str) -> set[str]:
    names = set(re.findall(r"\b(?:cronwork|dramatiq)_[a-z_]+\b", expr))
    return {next((n.removesuffix(s) for s in HISTOGRAM_SUFFIXES if n.endswith(s)), n) for n in names}


def test_dashboard_queries_are_valid_promql(tmp_path):
    """promtool parses each query as a recording rule's expression, Grafana's variables replaced."""
    rules = []
    for index, expr in enumerate(_dashboard_queries().values()):
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"a Grafana variable this test does not know: {expr}"
        rules.append({"record": f"cronwork:dashboard_query_{index}", "expr": expr})
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = _run(["promtool", "check", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_alerts_and_dashboard_read_only_metrics_the_services_export(rule):
    used = {alert: _metrics_in(body["expr"]) for alert, body in _alerts(rule).items()}
    used |= {title: _metrics_in(expr) for title, expr in _dashboard_queries().items()}
    unknown = {where: names - CONTRACT_METRICS for where, names in used.items() if names - CONTRACT_METRICS}
    assert unknown == {}


def test_dashboard_shows_the_schedulers_health():
    """What an operator looks for first: firing by outcome, lateness, missed and skipped slots, failing
    schedules, the tick budget, queues and their consumers, unfinished runs, and the API."""
    shown = set().union(*map(_metrics_in, _dashboard_queries().values()))
    assert {
        "cronwork_runs_finished_total",
        "cronwork_slot_lateness_seconds",
        "cronwork_slots_missed_total",
        "cronwork_slots_skipped_total",
        "cronwork_schedules_failing_repeatedly",
        "cronwork_ticks_in_flight",
        "cronwork_tick_budget",
        "cronwork_queue_messages",
        "cronwork_queue_consumers",
        "cronwork_runs_unfinished",
        "cronwork_http_requests_total",
        "cronwork_http_request_duration_seconds",
    } <= shown
