"""The Helm chart renders what a platform engineer relies on: valid manifests, safe pods, workers that scale
and drain, secrets kept out of ConfigMaps, migrations before rollouts, and values the schema checks."""

from __future__ import annotations

import base64
import dataclasses
import re
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml

from shared.settings import LARGEST_TICK_BUDGET, SETTINGS, Setting, Settings

DEPLOYMENTS = ("api", "worker", "beat")
DECLARED = frozenset(s.env for s in SETTINGS)
# Where each declared setting goes. The URLs and the sensitive settings are credentials: the pods read them from
# the Secret (secretKeyRef), never from the ConfigMap. The URLs are required; a sensitive setting is optional, so
# that a Secret made without it still starts the pods. MOCK_USER_EMAIL and MOCK_USER_ROLE are rendered in dev mode only. Every other
# declared setting is in the ConfigMap.
URL_SETTINGS = frozenset({"DATABASE_URL", "BROKER_URL"})
FROM_THE_SECRET = frozenset(s.env for s in SETTINGS if s.sensitive)
SENSITIVE_SETTINGS = FROM_THE_SECRET - URL_SETTINGS
DEV_ONLY_SETTINGS = frozenset({"MOCK_USER_EMAIL", "MOCK_USER_ROLE"})
PLACEHOLDER_URLS = {"DATABASE_URL": "postgresql://u:p@db/cronwork", "BROKER_URL": "amqp://u:p@mq/%2F"}
# Overrides on top of the all-on values for the branches the all-on file cannot show at the same time.
HPA_INSTEAD_OF_KEDA = ("worker.keda.enabled=false", "worker.autoscaling.enabled=true")
WITH_EXISTING_SECRET = (
    "secrets.existingSecret=platform-cronwork",
    "secrets.databaseUrl=",
    "secrets.brokerUrl=",
)
# Two Fernet keys (32 bytes, URL-safe base64), the new one first, as during a rotation.
NEW_KEY = base64.urlsafe_b64encode(b"\x02" * 32).decode()
OLD_KEY = base64.urlsafe_b64encode(b"\x01" * 32).decode()
WITH_KEYS_AND_SMTP_PASSWORD = (
    rf"secrets.secretKeys={NEW_KEY}\,{OLD_KEY}",  # --set splits on an unescaped comma
    "secrets.smtpPassword=mail-placeholder",
)
# Custom resources kubernetes-validate has no schema for; everything else must be validated.
CUSTOM_RESOURCE_KINDS = {
    "ScaledObject",
    "TriggerAuthentication",
    "ServiceMonitor",
    "PodMonitor",
    "PrometheusRule",
}
SECRET_LOOKING = re.compile(
    r"DATABASE_URL|BROKER_URL|PASSW|SECRET|TOKEN|CREDENTIAL|://[^/\s]*:[^@\s]*@", re.I
)


def find(manifests: list[dict[str, Any]], kind: str, name_suffix: str = "") -> list[dict[str, Any]]:
    return [m for m in manifests if m["kind"] == kind and m["metadata"]["name"].endswith(name_suffix)]


def only(manifests: list[dict[str, Any]], kind: str, name_suffix: str = "") -> dict[str, Any]:
    found = find(manifests, kind, name_suffix)
    assert len(found) == 1, (
        f"expected one {kind} named *{name_suffix}, got {[m['metadata']['name'] for m in found]}"
    )
    return found[0]


def settings_config_map(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    """The ConfigMap of the settings the pods read, not the dashboard's or the schedules' beside it."""
    [config_map] = [
        c
        for c in find(manifests, "ConfigMap")
        if not c["metadata"]["name"].endswith(("-dashboard", "-schedules"))
    ]
    return config_map


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def secret_refs(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The container's variables read from a Secret, each with its secretKeyRef."""
    return {
        name: source["secretKeyRef"]
        for name, source in env_of(container).items()
        if isinstance(source, dict) and "secretKeyRef" in source
    }


def chart_secret(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    """The chart-managed Secret the pods read (not its hook copy for the migration)."""
    [secret] = [
        s for s in find(manifests, "Secret") if "helm.sh/hook" not in s["metadata"].get("annotations", {})
    ]
    return secret


class Variant(NamedTuple):
    """A value set: values files and --set assignments."""

    values: tuple[Path, ...]
    set_values: tuple[str, ...]


@pytest.fixture(
    scope="module",
    params=[(False, ()), (True, ()), (True, HPA_INSTEAD_OF_KEDA), (True, WITH_EXISTING_SECRET)],
    ids=["defaults", "all-on", "all-on-with-hpa", "all-on-with-existing-secret"],
)
def variant(request: pytest.FixtureRequest, chart) -> Variant:
    """Each value set the chart must render correctly."""
    all_on, set_values = request.param
    return Variant((chart.all_on_values,) if all_on else (), set_values)


# --- the tools accept the chart --------------------------------------------------------------------------


@pytest.mark.parametrize("all_on", [False, True], ids=["defaults", "all-on"])
def test_chart_passes_strict_lint(chart, all_on):
    result = chart.lint(*([chart.all_on_values] if all_on else []))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rendered_manifests_pass_strict_kubernetes_validation(chart, variant):
    rendered = chart.template(*variant.set_values, values=variant.values).stdout
    result = chart.validate(rendered)
    assert result.returncode == 0, result.stdout + result.stderr
    # kubernetes-validate only warns about a kind it has no schema for. Only custom resources may go
    # unvalidated: a core kind with a mistyped apiVersion would "lack a schema" too.
    unvalidated = set(re.findall(r"Couldn't find schema for kind (\w+)", result.stdout))
    assert unvalidated <= CUSTOM_RESOURCE_KINDS, result.stdout
    core = [m for m in yaml.safe_load_all(rendered) if m and m["kind"] not in CUSTOM_RESOURCE_KINDS]
    assert result.stdout.count(" passed for resource ") == len(core), result.stdout


def test_kubernetes_validate_rejects_an_unknown_field(chart):
    """Guards the check itself: strict validation must catch a misspelt field."""
    bad = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata: {}\nspec: {}\n"
    result = chart.validate(bad)
    assert result.returncode != 0
    assert "'spec' was unexpected" in result.stdout


# --- every pod is safe and observable --------------------------------------------------------------------


def test_every_deployment_has_probes_resources_and_a_locked_down_context(chart, variant):
    manifests = chart.render(*variant.set_values, values=variant.values)
    deployments = find(manifests, "Deployment")
    assert sorted(d["metadata"]["name"].rsplit("-", 1)[1] for d in deployments) == sorted(DEPLOYMENTS)
    for deployment in deployments:
        spec = pod_spec(deployment)
        assert spec["securityContext"]["runAsNonRoot"] is True
        for container in spec["containers"]:
            where = f"{deployment['metadata']['name']}/{container['name']}"
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                assert container.get(probe), f"{where} has no {probe}"
            assert container["resources"]["requests"].keys() >= {"cpu", "memory"}, where
            assert "memory" in container["resources"]["limits"], where
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            # The processes write to /tmp only: it must be a writable volume under the read-only root.
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            volumes = {v["name"]: v for v in spec["volumes"]}
            assert "emptyDir" in volumes[mounts["/tmp"]], where


def test_api_probes_hit_health_and_readiness_endpoints(chart):
    api = pod_spec(only(chart.render(), "Deployment", "-api"))["containers"][0]
    assert api["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert api["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert api["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]


@pytest.mark.parametrize("role", ["worker", "beat"])
def test_worker_and_beat_probes_run_the_cronwork_probe_command(chart, role):
    container = pod_spec(only(chart.render(), "Deployment", f"-{role}"))["containers"][0]
    assert container["args"] == [role]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["exec"]["command"] == ["cronwork", "probe", role]
    # Their one port serves Prometheus metrics (tests/deploy/test_chart_monitoring.py).
    assert [port["name"] for port in container["ports"]] == ["metrics"]


def test_probe_timings_follow_values(chart):
    manifests = chart.render("worker.livenessProbe.periodSeconds=45", "api.readinessProbe.failureThreshold=7")
    worker = pod_spec(only(manifests, "Deployment", "-worker"))["containers"][0]
    api = pod_spec(only(manifests, "Deployment", "-api"))["containers"][0]
    assert worker["livenessProbe"]["periodSeconds"] == 45
    assert api["readinessProbe"]["failureThreshold"] == 7


def test_every_pod_and_object_carries_the_standard_labels(chart):
    for manifest in chart.render_all_on():
        labels = manifest["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == chart.release
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert {"app.kubernetes.io/name", "app.kubernetes.io/version", "helm.sh/chart"} <= labels.keys()


# --- workers scale and drain -----------------------------------------------------------------------------


@pytest.mark.parametrize("replicas", [1, 5])
def test_worker_replicas_follow_values(chart, replicas):
    worker = only(chart.render(f"worker.replicaCount={replicas}"), "Deployment", "-worker")
    assert worker["spec"]["replicas"] == replicas


@pytest.mark.parametrize("autoscaler", ["worker.autoscaling.enabled=true", "worker.keda.enabled=true"])
def test_worker_replicas_are_left_to_the_autoscaler(chart, autoscaler):
    worker = only(chart.render(autoscaler), "Deployment", "-worker")
    assert "replicas" not in worker["spec"]


def test_no_autoscaler_by_default(chart):
    manifests = chart.render()
    assert find(manifests, "HorizontalPodAutoscaler") == []
    assert find(manifests, "ScaledObject") == []
    assert find(manifests, "TriggerAuthentication") == []


def test_hpa_scales_the_worker_on_cpu_as_configured(chart):
    manifests = chart.render(
        "worker.autoscaling.enabled=true",
        "worker.autoscaling.minReplicas=3",
        "worker.autoscaling.maxReplicas=9",
        "worker.autoscaling.targetCPUUtilizationPercentage=65",
    )
    hpa = only(manifests, "HorizontalPodAutoscaler")
    worker = only(manifests, "Deployment", "-worker")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": worker["metadata"]["name"],
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 9)
    [metric] = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"] == {"type": "Utilization", "averageUtilization": 65}
    assert find(manifests, "ScaledObject") == []


def test_keda_scales_the_worker_on_the_runs_queue_as_configured(chart):
    manifests = chart.render(
        "worker.keda.enabled=true",
        "worker.keda.minReplicaCount=2",
        "worker.keda.maxReplicaCount=25",
        "worker.keda.queueLength=40",
        "worker.keda.pollingInterval=10",
        "worker.keda.cooldownPeriod=120",
    )
    scaled = only(manifests, "ScaledObject")
    worker = only(manifests, "Deployment", "-worker")
    spec = scaled["spec"]
    assert spec["scaleTargetRef"]["name"] == worker["metadata"]["name"]
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (2, 25)
    assert (spec["pollingInterval"], spec["cooldownPeriod"]) == (10, 120)
    [trigger] = spec["triggers"]
    assert trigger["type"] == "rabbitmq"
    assert trigger["metadata"] == {
        "protocol": "amqp",
        "queueName": "cronwork.runs",
        "mode": "QueueLength",
        "value": "40",
    }
    # KEDA reads the broker URL from the same Secret as the pods, through a TriggerAuthentication.
    auth = only(manifests, "TriggerAuthentication")
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    broker_ref = env_of(pod_spec(worker)["containers"][0])["BROKER_URL"]["secretKeyRef"]
    assert auth["spec"]["secretTargetRef"] == [{"parameter": "host", **broker_ref}]
    assert find(manifests, "HorizontalPodAutoscaler") == []


def test_keda_never_scales_the_workers_to_zero(chart):
    """The workers also publish the ticks that fill cronwork.runs: zero workers would never wake up."""
    result = chart.template("worker.keda.enabled=true", "worker.keda.minReplicaCount=0", expect_failure=True)
    assert "minReplicaCount" in result.stderr


def test_hpa_and_keda_together_are_refused(chart):
    result = chart.template(
        "worker.autoscaling.enabled=true", "worker.keda.enabled=true", expect_failure=True
    )
    assert "mutually exclusive" in result.stderr


@pytest.mark.parametrize("time_limit_s", [60, 300, 1500])
def test_worker_grace_period_outlasts_the_task_time_limit(chart, time_limit_s):
    manifests = chart.render(f"config.taskTimeLimitS={time_limit_s}")
    worker = only(manifests, "Deployment", "-worker")
    config = settings_config_map(manifests)
    assert config["data"]["TASK_TIME_LIMIT_S"] == str(time_limit_s)
    assert pod_spec(worker)["terminationGracePeriodSeconds"] > time_limit_s


@pytest.mark.parametrize(
    ("pdb_values", "expected"),
    [
        ((), {"maxUnavailable": 1}),
        (("worker.pdb.minAvailable=2",), {"minAvailable": 2}),
        (("worker.pdb.maxUnavailable=50%",), {"maxUnavailable": "50%"}),
    ],
)
def test_worker_pod_disruption_budget_follows_values(chart, pdb_values, expected):
    manifests = chart.render(*pdb_values)
    pdb = only(manifests, "PodDisruptionBudget", "-worker")
    budget = {k: v for k, v in pdb["spec"].items() if k != "selector"}
    assert budget == expected
    worker = only(manifests, "Deployment", "-worker")
    assert pdb["spec"]["selector"]["matchLabels"] == worker["spec"]["selector"]["matchLabels"]


def test_pod_disruption_budgets_can_be_turned_off(chart):
    manifests = chart.render("worker.pdb.enabled=false", "api.pdb.enabled=false")
    assert find(manifests, "PodDisruptionBudget") == []


def test_beat_replicas_follow_values(chart):
    beat = only(chart.render("beat.replicaCount=2"), "Deployment", "-beat")
    assert beat["spec"]["replicas"] == 2


# --- secrets and settings --------------------------------------------------------------------------------


def test_no_secret_is_rendered_into_a_config_map(chart, variant):
    for config_map in find(chart.render(*variant.set_values, values=variant.values), "ConfigMap"):
        for key, value in config_map.get("data", {}).items():
            assert not SECRET_LOOKING.search(key), f"{config_map['metadata']['name']} holds {key}"
            assert not SECRET_LOOKING.search(str(value)), f"{config_map['metadata']['name']}: {key}={value}"


def test_the_placement_rule_names_declared_settings():
    """Guards the rule below: a renamed setting must not leave a name here that matches nothing."""
    assert FROM_THE_SECRET | DEV_ONLY_SETTINGS <= DECLARED


def test_config_map_carries_every_non_secret_setting_and_nothing_else(chart):
    """Every variable the services read, so that each is set from values.yaml: the credentials come from the
    Secret and MOCK_USER_EMAIL only in dev mode. And no other: a name the services do not read would be ignored
    silently. Its values are the services' defaults (the next test) and values they accept (the schema tests)."""
    data = settings_config_map(chart.render())["data"]
    assert data.keys() == DECLARED - FROM_THE_SECRET - DEV_ONLY_SETTINGS


def test_pods_read_exactly_the_credentials_from_the_secret(chart, variant):
    """Every api, worker, beat and migration container reads the URLs and the sensitive settings from the
    Secret, and nothing else; only the sensitive ones are optional (the URLs must be there)."""
    manifests = chart.render(*variant.set_values, values=variant.values)
    for workload in find(manifests, "Deployment") + find(manifests, "Job"):
        refs = secret_refs(pod_spec(workload)["containers"][0])
        where = workload["metadata"]["name"]
        assert refs.keys() == FROM_THE_SECRET, where
        assert {name for name, ref in refs.items() if ref.get("optional")} == SENSITIVE_SETTINGS, where


def test_chart_defaults_are_the_services_defaults(chart):
    """A default changed in shared/settings.py must be changed in values.yaml too, for the ConfigMap and for the
    chart's Secret alike; only AUTH_MODE and LOG_FORMAT differ on purpose (the chart is for production, behind
    an authenticating proxy, its logs read by a pipeline)."""
    parsed = Settings.from_env({**settings_config_map(chart.render())["data"], **PLACEHOLDER_URLS})
    assert (parsed.auth_mode, parsed.log_format) == ("header", "json")
    # In dev mode the chart renders MOCK_USER_EMAIL too: every setting but the credentials is in the ConfigMap,
    # and the chart's own Secret holds the credentials (the URLs set, the rest at their defaults).
    manifests = chart.render(
        "config.authMode=dev",
        "secrets.existingSecret=",
        f"secrets.databaseUrl={PLACEHOLDER_URLS['DATABASE_URL']}",
        f"secrets.brokerUrl={PLACEHOLDER_URLS['BROKER_URL']}",
    )
    dev = settings_config_map(manifests)["data"]
    assert DECLARED - dev.keys() == FROM_THE_SECRET
    secret = chart_secret(manifests)["stringData"]
    assert secret.keys() == FROM_THE_SECRET
    parsed = Settings.from_env({**dev, **secret})
    assert dataclasses.replace(
        parsed, database_url="", broker_url="", log_format="text"
    ) == Settings.from_env({})


def _schema_type(setting: Setting) -> dict[str, Any]:
    """What values.schema.json must say of a setting's value: its type and bounds as declared. A `true`/`false`
    setting is a YAML boolean (so `--set config.demoTaskTypes=true` works), which `quote` renders as the text."""
    if set(setting.choices) == {"true", "false"}:
        return {"type": "boolean", "minimum": None, "maximum": None, "exclusiveMinimum": None, "enum": None}
    return {
        "type": "integer" if setting.is_whole_number else "number" if setting.is_fractional else "string",
        "minimum": setting.minimum,
        "maximum": setting.maximum,
        "exclusiveMinimum": setting.above,
        "enum": list(setting.choices) or None,
    }


def _settings_from_values(chart) -> dict[str, str]:
    """Each variable the chart sets from a value, with that value's path (``config.tickBudget``), as the
    ``cronwork.settings`` template in _helpers.tpl maps them (``NAME: {{ .Values.path | quote }}``, or ``| int64 |
    quote`` for a number that may reach a million, which Helm would otherwise write as ``1e+06``)."""
    helpers = (chart.path / "templates" / "_helpers.tpl").read_text()
    mapping = r"^([A-Z][A-Z0-9_]*): \{\{ \.Values\.([\w.]+) (?:\| int64 )?\| quote \}\}$"
    return dict(re.findall(mapping, helpers, re.M))


def test_schema_bounds_are_the_services_bounds(chart):
    """The schema refuses at install time what the services would refuse at start-up, and nothing they accept:
    each setting the chart takes from a value has the type, minimum, maximum and choices declared in
    shared/settings.py (a `true`/`false` choice as a boolean)."""
    from_values = _settings_from_values(chart)
    rendered = settings_config_map(chart.render("config.authMode=dev"))["data"]
    assert from_values.keys() == rendered.keys() - {"HEARTBEAT_DIR"}  # the pods' /tmp, fixed by the chart
    schema = yaml.safe_load((chart.path / "values.schema.json").read_text())
    declared = {s.env: s for s in SETTINGS}
    mismatches = {}
    for env, path in from_values.items():
        node = schema
        for key in path.split("."):
            node = node["properties"][key]
        expected = _schema_type(declared[env])
        in_schema = {key: node.get(key) for key in expected}
        if in_schema != expected:
            mismatches[f"{path} ({env})"] = {"values.schema.json": in_schema, "shared/settings.py": expected}
    assert mismatches == {}


def test_mock_user_is_only_configured_in_dev_auth_mode(chart):
    assert "MOCK_USER_EMAIL" not in settings_config_map(chart.render())["data"]
    dev = settings_config_map(chart.render("config.authMode=dev", "config.mockUserEmail=demo@example.com"))
    assert dev["data"]["MOCK_USER_EMAIL"] == "demo@example.com"


def test_chart_managed_secret_holds_the_credentials_the_pods_read(chart):
    manifests = chart.render_all_on(*WITH_KEYS_AND_SMTP_PASSWORD)
    secret = chart_secret(manifests)
    data = secret["stringData"]
    assert data.keys() == FROM_THE_SECRET
    assert data["DATABASE_URL"].startswith("postgresql://")
    assert data["BROKER_URL"].startswith("amqp://")
    assert data["SECRET_KEYS"] == f"{NEW_KEY},{OLD_KEY}"
    assert data["SMTP_PASSWORD"] == "mail-placeholder"
    assert Settings.from_env(data).secret_keys == f"{NEW_KEY},{OLD_KEY}"  # the services take it as it is
    for deployment in find(manifests, "Deployment"):
        container = pod_spec(deployment)["containers"][0]
        for name, ref in secret_refs(container).items():
            assert (ref["name"], ref["key"]) == (secret["metadata"]["name"], name)
        assert container["envFrom"] == [
            {"configMapRef": {"name": settings_config_map(manifests)["metadata"]["name"]}}
        ]


def test_existing_secret_is_used_and_no_secret_is_rendered(chart):
    manifests = chart.render_all_on(
        *WITH_EXISTING_SECRET, "secrets.databaseUrlKey=uri", "secrets.secretKeysKey=fernet-keys"
    )
    assert find(manifests, "Secret") == []
    for workload in find(manifests, "Deployment") + find(manifests, "Job"):
        refs = secret_refs(pod_spec(workload)["containers"][0])
        assert refs == {
            "DATABASE_URL": {"name": "platform-cronwork", "key": "uri"},
            "BROKER_URL": {"name": "platform-cronwork", "key": "BROKER_URL"},
            # Optional: a Secret made without them still starts the pods.
            "SECRET_KEYS": {"name": "platform-cronwork", "key": "fernet-keys", "optional": True},
            "SMTP_PASSWORD": {"name": "platform-cronwork", "key": "SMTP_PASSWORD", "optional": True},
        }
    assert (
        only(manifests, "TriggerAuthentication")["spec"]["secretTargetRef"][0]["name"] == "platform-cronwork"
    )


def test_missing_credentials_fail_with_a_clear_message(chart):
    result = chart.template("secrets.existingSecret=", expect_failure=True)
    assert "secrets.databaseUrl" in result.stderr and "secrets.existingSecret" in result.stderr


@pytest.mark.parametrize(
    "assignment",
    [
        "secrets.databaseUrl=postgresql://u:p@db/cronwork",
        "secrets.brokerUrl=amqp://u:p@mq/%2F",
        f"secrets.secretKeys={NEW_KEY}",
        "secrets.smtpPassword=mail-placeholder",
    ],
)
def test_credentials_beside_an_existing_secret_are_refused(chart, assignment):
    """They would be ignored without a word: the pods read that Secret."""
    result = chart.template(assignment, expect_failure=True)
    assert "must be empty when secrets.existingSecret is set" in result.stderr
    assert assignment.split("=")[0] in result.stderr


# --- the migration runs before the Deployments -----------------------------------------------------------


def test_migration_job_is_a_pre_install_and_pre_upgrade_hook(chart, variant):
    manifests = chart.render(*variant.set_values, values=variant.values)
    job = only(manifests, "Job", "-migrate")
    annotations = job["metadata"]["annotations"]
    assert set(annotations["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
    assert int(annotations["helm.sh/hook-weight"]) == 0
    assert pod_spec(job)["containers"][0]["args"] == ["migrate"]
    assert pod_spec(job)["restartPolicy"] == "Never"
    # Helm applies ordinary objects only after the pre-install/pre-upgrade hooks succeed: the Deployments
    # must not be hooks themselves, or they could start before the schema is at head.
    for deployment in find(manifests, "Deployment"):
        assert "helm.sh/hook" not in deployment["metadata"].get("annotations", {})


def test_migration_reads_a_secret_that_exists_before_the_release(chart):
    """On a first install the chart's own Secret is created after the hooks: the Job reads a hook copy."""
    manifests = chart.render_all_on(*WITH_KEYS_AND_SMTP_PASSWORD)
    job = only(manifests, "Job", "-migrate")
    env = env_of(pod_spec(job)["containers"][0])
    copy = only(manifests, "Secret", "-migrate")
    refs = secret_refs(pod_spec(job)["containers"][0])
    assert {ref["name"] for ref in refs.values()} == {copy["metadata"]["name"]}
    assert copy["stringData"] == chart_secret(manifests)["stringData"]
    hook = copy["metadata"]["annotations"]
    assert hook["helm.sh/hook"] == job["metadata"]["annotations"]["helm.sh/hook"]
    assert int(hook["helm.sh/hook-weight"]) < int(job["metadata"]["annotations"]["helm.sh/hook-weight"])
    assert "hook-succeeded" in hook["helm.sh/hook-delete-policy"]
    # Its settings are inline (the ConfigMap does not exist yet either) and match the ConfigMap's.
    config = settings_config_map(manifests)["data"]
    assert {k: v for k, v in env.items() if k in config} == config
    # Nor does the chart's ServiceAccount.
    assert pod_spec(job)["serviceAccountName"] == "default"


def test_migration_job_is_locked_down_and_bounded(chart):
    job = only(chart.render(), "Job", "-migrate")
    container = pod_spec(job)["containers"][0]
    assert container["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["resources"]["limits"]["memory"]
    assert job["spec"]["activeDeadlineSeconds"] > 0


# --- the API is reachable --------------------------------------------------------------------------------


def test_api_service_targets_the_named_http_port(chart):
    manifests = chart.render()
    service = only(manifests, "Service", "-api")
    api = only(manifests, "Deployment", "-api")
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
    assert service["spec"]["selector"] == api["spec"]["selector"]["matchLabels"]
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "api"


def test_ingress_is_optional_and_routes_to_the_api_service(chart):
    assert find(chart.render(), "Ingress") == []
    manifests = chart.render_all_on()
    ingress = only(manifests, "Ingress")
    service = only(manifests, "Service", "-api")
    backends = [p["backend"]["service"] for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
    assert backends and all(
        b == {"name": service["metadata"]["name"], "port": {"name": "http"}} for b in backends
    )
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"][0]["secretName"] == "cronwork-tls"


def test_prometheus_scraping_is_optional(chart):
    default_api = only(chart.render(), "Deployment", "-api")
    assert "prometheus.io/scrape" not in default_api["spec"]["template"]["metadata"]["annotations"]
    assert find(chart.render(), "ServiceMonitor") == []

    manifests = chart.render_all_on()
    annotations = only(manifests, "Deployment", "-api")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "8080"
    assert annotations["prometheus.io/path"] == "/metrics"
    monitor = only(manifests, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert (
        monitor["spec"]["selector"]["matchLabels"] == only(manifests, "Service", "-api")["spec"]["selector"]
    )
    assert monitor["spec"]["endpoints"] == [
        {"port": "http", "path": "/metrics", "interval": "15s", "scrapeTimeout": "5s"}
    ]


def test_a_config_change_rolls_the_pods(chart):
    def checksum(*set_values):
        api = only(chart.render(*set_values), "Deployment", "-api")
        return api["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    assert checksum() != checksum("config.logLevel=DEBUG")


@pytest.mark.parametrize(
    "assignment",
    [
        "secrets.databaseUrl=postgresql://u:other@db/cronwork",
        "secrets.brokerUrl=amqp://u:other@mq/%2F",
        f"secrets.secretKeys={NEW_KEY}",  # a rotation's first step
        "secrets.smtpPassword=other",
    ],
)
def test_a_change_to_the_charts_secret_rolls_the_pods(chart, assignment):
    def checksums(*set_values):
        manifests = chart.render_all_on(*set_values)
        return {
            d["metadata"]["name"]: d["spec"]["template"]["metadata"]["annotations"]["checksum/secret"]
            for d in find(manifests, "Deployment")
        }

    before, after = checksums(), checksums(assignment)
    assert before.keys() == after.keys() and len(before) == len(DEPLOYMENTS)
    assert all(before[name] != after[name] for name in before), assignment


def test_demo_task_types_are_off_unless_turned_on(chart):
    """The chart ships without the proof of concept's simulated task types; a boolean value turns them on."""
    for set_values, offered in [((), False), (("config.demoTaskTypes=true",), True)]:
        data = settings_config_map(chart.render(*set_values))["data"]
        assert data["DEMO_TASK_TYPES"] == str(offered).lower()
        assert Settings.from_env({**data, **PLACEHOLDER_URLS}).offers_demo_task_types is offered


# --- the values schema -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("assignment", "named"),
    [
        ("replicaCount=3", "replicaCount"),  # the helm create name, not ours
        ("worker.replicas=3", "replicas"),
        ("worker.keda.queuLength=5", "queuLength"),
        ("api.resources.limit.cpu=1", "limit"),
    ],
)
def test_schema_rejects_an_unknown_key(chart, assignment, named):
    result = chart.template(assignment, expect_failure=True)
    assert "additional properties" in result.stderr and f"'{named}'" in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("assignment", "named"),
    [
        ("worker.replicaCount=three", "/worker/replicaCount"),
        ("worker.autoscaling.enabled=yes", "/worker/autoscaling/enabled"),
        ("config.authMode=oauth", "/config/authMode"),
        ("ingress.hosts=example.com", "/ingress/hosts"),
        # The bounds the services themselves enforce at start-up (shared/settings.py):
        ("config.tickHorizonS=2000", "/config/tickHorizonS"),
        ("config.tickHorizonS=30", "/config/tickHorizonS"),
        ("config.taskTimeLimitS=3600", "/config/taskTimeLimitS"),
        ("config.pumpGraceS=1", "/config/pumpGraceS"),
        (f"config.tickBudget={LARGEST_TICK_BUDGET + 1}", "/config/tickBudget"),
        ("config.tickBudget=99", "/config/tickBudget"),
        ("config.tickBucketMs=1001", "/config/tickBucketMs"),
        ("config.tickBucketMs=-1", "/config/tickBucketMs"),
        ("config.smtpPort=0", "/config/smtpPort"),
        ("config.smtpPort=65536", "/config/smtpPort"),
        ("config.smtpSecurity=ssl", "/config/smtpSecurity"),
        ("config.demoTaskTypes=yes", "/config/demoTaskTypes"),
        # Not a Fernet key: refused at install time rather than when the first secret is stored.
        ("secrets.secretKeys=changeme", "/secrets/secretKeys"),
        ("beat.replicaCount=0", "/beat/replicaCount"),
    ],
)
def test_schema_rejects_a_wrong_type_or_value(chart, assignment, named):
    result = chart.template(assignment, expect_failure=True)
    assert named in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("assignments", "named"),
    [
        (
            (
                "worker.autoscaling.enabled=true",
                "worker.autoscaling.minReplicas=5",
                "worker.autoscaling.maxReplicas=2",
            ),
            "minReplicas",
        ),
        (
            ("worker.keda.enabled=true", "worker.keda.minReplicaCount=5", "worker.keda.maxReplicaCount=2"),
            "minReplicaCount",
        ),
    ],
)
def test_an_autoscaler_whose_minimum_exceeds_its_maximum_is_refused(chart, assignments, named):
    result = chart.template(*assignments, expect_failure=True)
    assert named in result.stderr, result.stderr


@pytest.mark.parametrize(
    "set_values",
    [
        (),
        # The edges of the schema's bounds: the services must accept every value the schema lets through.
        ("config.tickHorizonS=90", "config.tickBudget=100", "config.tickBucketMs=0", "config.smtpPort=1"),
        (
            "config.tickHorizonS=1500",
            "config.taskTimeLimitS=1500",
            f"config.tickBudget={LARGEST_TICK_BUDGET}",
            "config.tickBucketMs=1000",
            "config.smtpPort=65535",
            "config.smtpSecurity=none",
            "config.demoTaskTypes=true",
        ),
    ],
    ids=["defaults", "lower-bounds", "upper-bounds"],
)
@pytest.mark.parametrize("values", ["defaults", "all-on"])
def test_the_services_accept_the_settings_the_chart_renders(chart, values, set_values):
    manifests = chart.render(*set_values) if values == "defaults" else chart.render_all_on(*set_values)
    settings = settings_config_map(manifests)["data"]
    parsed = Settings.from_env({**settings, **PLACEHOLDER_URLS})  # raises SettingsError, naming the variable
    assert parsed.task_time_limit_s == int(settings["TASK_TIME_LIMIT_S"])
    assert parsed.tick_budget == int(settings["TICK_BUDGET"])
    assert parsed.tick_bucket_ms == int(settings["TICK_BUCKET_MS"])
    assert parsed.tick_threads == int(settings["TICK_THREADS"])
    assert parsed.smtp_port == int(settings["SMTP_PORT"])


def test_schema_forbids_unknown_keys_at_every_level(chart):
    schema = yaml.safe_load((chart.path / "values.schema.json").read_text())

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                assert node.get("additionalProperties") is False, f"{where} accepts unknown keys"
            for key, child in node.items():
                walk(child, f"{where}/{key}")
        elif isinstance(node, list):
            for index, child in enumerate(node):
                walk(child, f"{where}/{index}")

    walk(schema, "#")


# --- documentation ---------------------------------------------------------------------------------------


# Values documented as one entry though they are maps: Kubernetes structures and probe timings.
OPAQUE_VALUES = {
    "resources",
    "podSecurityContext",
    "securityContext",
    "startupProbe",
    "livenessProbe",
    "readinessProbe",
}


def _value_paths(node: Any, prefix: str = "") -> list[str]:
    """Dotted paths of the values a user sets; empty maps, lists and OPAQUE_VALUES are one value each."""
    if not isinstance(node, dict) or not node or prefix.rsplit(".", 1)[-1] in OPAQUE_VALUES:
        return [prefix]
    return [
        path for key, child in node.items() for path in _value_paths(child, f"{prefix}.{key}".lstrip("."))
    ]


def test_every_value_is_documented_in_the_chart_readme(chart):
    readme = (chart.path / "README.md").read_text()
    documented = set(re.findall(r"^\| `([^`]+)` \|", readme, re.M))
    values = set(_value_paths(yaml.safe_load((chart.path / "values.yaml").read_text())))
    assert values - documented == set(), "values missing from deploy/helm/cronwork/README.md"
    assert documented - values == set(), "README.md documents values the chart does not have"


def test_notes_render_for_every_variant(chart, variant, tmp_path):
    """NOTES.txt is only rendered at install time: a template error in it would break installs."""
    notes = chart.notes(*variant.set_values, values=variant.values, workdir=tmp_path)
    assert "logs job/" in notes
    assert "More than one is safe" in notes  # the beat replicas
