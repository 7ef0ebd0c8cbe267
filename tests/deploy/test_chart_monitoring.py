"""What the chart gives monitoring and the network: the workers' and the beat's metrics ports and their
PodMonitors, the Grafana dashboard's ConfigMap, and the NetworkPolicy that keeps the API behind its proxy. The
alerts themselves are in test_alerts.py."""

from __future__ import annotations

import json

from shared.settings import Settings
from tests.deploy.conftest import REPO_ROOT
from tests.deploy.test_chart import PLACEHOLDER_URLS, env_of, find, only, pod_spec, settings_config_map

DASHBOARD_FILE = "deploy/helm/cronwork/files/cronwork-dashboard.json"
INGRESS_PEER = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}},
    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "ingress-nginx"}},
}
PROMETHEUS_PEER = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
}


def _container(manifests, role):
    return pod_spec(only(manifests, "Deployment", f"-{role}"))["containers"][0]


# --- the workers and the beat serve metrics, and are scraped ---------------------------------------------


def test_workers_and_beat_serve_metrics_on_the_ports_they_are_told(chart):
    for manifests, worker_port, beat_port in [
        (chart.render(), 9191, 9192),
        (chart.render_all_on(), 9291, 9292),
    ]:
        worker, beat = _container(manifests, "worker"), _container(manifests, "beat")
        assert worker["ports"] == [{"name": "metrics", "containerPort": worker_port, "protocol": "TCP"}]
        assert beat["ports"] == [{"name": "metrics", "containerPort": beat_port, "protocol": "TCP"}]
        # Dramatiq's Prometheus middleware listens on dramatiq_prom_port; the beat reads BEAT_METRICS_PORT.
        assert env_of(worker)["dramatiq_prom_port"] == str(worker_port)
        settings = Settings.from_env({**settings_config_map(manifests)["data"], **PLACEHOLDER_URLS})
        assert settings.beat_metrics_port == beat_port


def test_pod_monitors_are_optional_and_scrape_each_roles_metrics_port(chart):
    assert find(chart.render(), "PodMonitor") == []
    manifests = chart.render_all_on()
    for role in ("worker", "beat"):
        monitor = only(manifests, "PodMonitor", f"-{role}")
        deployment = only(manifests, "Deployment", f"-{role}")
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        assert monitor["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
        assert monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == role
        assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["default"]}
        assert monitor["spec"]["podMetricsEndpoints"] == [
            {"port": "metrics", "path": "/metrics", "interval": "20s", "scrapeTimeout": "5s"}
        ]
    # The API keeps its ServiceMonitor; no PodMonitor selects its pods.
    assert {
        m["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"]
        for m in find(manifests, "PodMonitor")
    } == {"worker", "beat"}


def test_prometheus_rule_is_labelled_for_the_prometheus_that_selects_it(chart):
    rule = only(chart.render_all_on(), "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rule["metadata"]["labels"]["app.kubernetes.io/instance"] == chart.release


# --- the dashboard ---------------------------------------------------------------------------------------


def test_dashboard_is_optional_and_shipped_as_the_file_for_grafanas_sidecar(chart):
    assert find(chart.render(), "ConfigMap", "-dashboard") == []
    config_map = only(chart.render_all_on(), "ConfigMap", "-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "Platform"}
    shipped = config_map["data"]["cronwork.json"]
    assert shipped == (REPO_ROOT / DASHBOARD_FILE).read_text().rstrip("\n")
    dashboard = json.loads(shipped)
    assert dashboard["uid"] == "cronwork-scheduler"
    # Every query reads the data source and namespace the viewer picks.
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            assert 'namespace="$namespace"' in target["expr"], panel["title"]


def test_dashboard_label_follows_values(chart):
    config_map = only(
        chart.render_all_on("metrics.dashboard.label=dashboards", "metrics.dashboard.labelValue=cronwork"),
        "ConfigMap",
        "-dashboard",
    )
    assert config_map["metadata"]["labels"]["dashboards"] == "cronwork"
    assert "grafana_dashboard" not in config_map["metadata"]["labels"]


# --- the NetworkPolicy -----------------------------------------------------------------------------------


def test_network_policy_is_optional(chart):
    assert find(chart.render(), "NetworkPolicy") == []


def test_network_policy_admits_only_the_proxy_and_the_scraper_to_the_api(chart):
    manifests = chart.render_all_on()
    policy = only(manifests, "NetworkPolicy", "-api")
    api = only(manifests, "Deployment", "-api")
    assert policy["spec"]["podSelector"] == {"matchLabels": api["spec"]["selector"]["matchLabels"]}
    assert policy["spec"]["policyTypes"] == ["Ingress"]  # egress (database, broker) is left alone
    http = [{"port": "http", "protocol": "TCP"}]
    assert policy["spec"]["ingress"] == [
        {"from": [INGRESS_PEER], "ports": http},
        {"from": [PROMETHEUS_PEER], "ports": http},
    ]
    # Each rule names its peers: a rule without `from` would admit every pod, and the header with it.
    assert all(rule["from"] for rule in policy["spec"]["ingress"])
    # The port it names is the API container's.
    assert [p["name"] for p in _container(manifests, "api")["ports"]] == ["http"]


def test_network_policy_without_a_scraper_admits_only_the_proxy(chart):
    policy = only(chart.render_all_on("networkPolicy.metricsFrom=null"), "NetworkPolicy")
    assert policy["spec"]["ingress"] == [
        {"from": [INGRESS_PEER], "ports": [{"port": "http", "protocol": "TCP"}]}
    ]


def test_network_policy_without_peers_is_refused(chart):
    """An empty list would shut everyone out (no rule) or, written as an empty `from`, let everyone in."""
    result = chart.template("networkPolicy.enabled=true", expect_failure=True)
    assert "networkPolicy.apiFrom" in result.stderr
