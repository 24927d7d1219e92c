"""The deployment files under deploy/: parsed and checked against the code they deploy.

What is checked here: the files parse, name only settings, metrics, paths and ports that exist, keep
the Lambda event source settings in sync with ``cdcsync lambda-config``, and keep the security and
shutdown properties the issue asks for. cfn-lint runs on the SAM template. Not checked here (no Docker
engine, no cluster, no AWS account): that the images start, that Kubernetes accepts the manifests, and
that the IAM policies are sufficient at run time.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from cdcsync.deploy import lambda_config
from cdcsync.entrypoints.cli import EXIT_CONFIG, EXIT_PROBLEMS
from cdcsync.mapping.loader import load_mappings
from cdcsync.metrics import METRICS
from cdcsync.settings import Settings, load_settings
from cdcsync.worker.coordinator import SHUTDOWN_SECONDS

ROOT = Path(__file__).parents[3]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
COMPOSE = DEPLOY / "compose"
CHECK_JSONSCHEMA = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent))
CFN_LINT = shutil.which("cfn-lint", path=str(Path(sys.executable).parent)) or shutil.which("cfn-lint")
KUBERNETES_VALIDATE = shutil.which("kubernetes-validate", path=str(Path(sys.executable).parent))
KUBECTL = shutil.which("kubectl")
BACKFILL_JOB = "backfill-job.yaml"
# The oldest Kubernetes the manifests are written for (the Makefile's lint-deploy validates against it)
KUBERNETES_VERSION = "1.30.0"


class _CloudFormationLoader(yaml.SafeLoader):
    """Reads ``!Ref X`` / ``!GetAtt X.Arn`` / ``!Sub`` / ``!Join`` as their long forms."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        assert isinstance(node, yaml.MappingNode)
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_CloudFormationLoader.add_multi_constructor("!", _intrinsic)


def _cloudformation(path: Path) -> Any:
    return yaml.load(path.read_text(), Loader=_CloudFormationLoader)  # noqa: S506 - a SafeLoader subclass


def _kubernetes() -> Iterator[dict[str, Any]]:
    for path in sorted(KUBERNETES.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            yield from yaml.safe_load_all(path.read_text())


def _kind(kind: str) -> dict[str, Any]:
    (found,) = [doc for doc in _kubernetes() if doc["kind"] == kind]
    return found


# --- metrics: dashboards and alerts may only name what the code exports -------------------------------
_EXPORTED = {spec.name for spec in METRICS} | {
    f"{spec.name}{suffix}"
    for spec in METRICS
    if spec.kind == "histogram"
    for suffix in ("_bucket", "_sum", "_count")
}


def _metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(cdcsync_[a-z_]+)\b", expr))


def _dashboard_exprs() -> list[tuple[str, str]]:
    dashboard = json.loads((DEPLOY / "grafana" / "cdcsync.json").read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel["targets"]]


def test_dashboard_every_query_names_exported_metrics() -> None:
    # GIVEN every panel query of the Grafana dashboard
    exprs = _dashboard_exprs()
    # THEN each names at least one metric, and only metrics cdcsync.metrics exports
    assert exprs
    for title, expr in exprs:
        assert _metric_names(expr), (title, expr)
        assert _metric_names(expr) <= _EXPORTED, (title, _metric_names(expr) - _EXPORTED)


def test_dashboard_shows_every_metric_the_issue_asks_for() -> None:
    # GIVEN the metrics named anywhere on the dashboard
    named = {name for _, expr in _dashboard_exprs() for name in _metric_names(expr)}
    # THEN lag, outcomes, latency, retries, dead letters, backfill, leases and trimmed data are all there
    assert {
        "cdcsync_replication_lag_seconds",
        "cdcsync_iterator_age_seconds",
        "cdcsync_records_total",
        "cdcsync_bulk_request_duration_seconds_bucket",
        "cdcsync_bulk_retries_total",
        "cdcsync_dlq_records_total",
        "cdcsync_backfill_items_total",
        "cdcsync_shards_owned",
        "cdcsync_trimmed_data_total",
    } <= named


@pytest.mark.parametrize(
    ("alert", "metric"),
    [
        ("CdcsyncIteratorAgeHigh", "cdcsync_replication_lag_seconds"),
        ("CdcsyncDeadLettersGrowing", "cdcsync_dlq_records_total"),
        ("CdcsyncBulkErrorRatioHigh", "cdcsync_records_total"),
        ("CdcsyncTrimmedData", "cdcsync_trimmed_data_total"),
        ("CdcsyncWorkerErrors", "cdcsync_worker_errors_total"),
    ],
)
def test_prometheus_rule_alert_watches_exported_metric(alert: str, metric: str) -> None:
    # GIVEN the PrometheusRule's alerts
    rules = {
        rule["alert"]: rule for group in _kind("PrometheusRule")["spec"]["groups"] for rule in group["rules"]
    }
    # THEN the alert exists, watches its metric, names only exported metrics and has a summary
    names = _metric_names(rules[alert]["expr"])
    assert metric in names
    assert names <= _EXPORTED
    assert rules[alert]["annotations"]["summary"]


def test_prometheus_rule_alerts_when_no_worker_is_up() -> None:
    # GIVEN the PrometheusRule's alerts and the scrape job of the worker (the Service's name, which the
    # Prometheus Operator gives as the job label, and the Compose Prometheus's job)
    rules = {
        rule["alert"]: rule for group in _kind("PrometheusRule")["spec"]["groups"] for rule in group["rules"]
    }
    scrape = yaml.safe_load((COMPOSE / "prometheus" / "prometheus.yml").read_text())
    job = _kind("Service")["metadata"]["name"]
    # THEN an alert fires when no target of that job is up (none left, or none answering)
    assert rules["CdcsyncWorkerDown"]["expr"] == f'absent(up{{job="{job}"}} == 1)'
    assert rules["CdcsyncWorkerDown"]["labels"]["severity"] == "critical"
    assert job in {config["job_name"] for config in scrape["scrape_configs"]}


def test_prometheus_rule_iterator_age_threshold_is_five_minutes() -> None:
    rules = {
        rule["alert"]: rule for group in _kind("PrometheusRule")["spec"]["groups"] for rule in group["rules"]
    }
    assert rules["CdcsyncIteratorAgeHigh"]["expr"].endswith("> 300")


# --- Kubernetes ---------------------------------------------------------------------------------------
def test_kubernetes_manifests_have_identity_and_are_all_in_kustomization() -> None:
    # GIVEN every manifest file and the kustomization
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    files = {path.name for path in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml", BACKFILL_JOB}
    # THEN each document names its API, kind and name, and kustomize applies every standing resource
    for doc in _kubernetes():
        assert doc["apiVersion"], doc
        assert doc["kind"], doc
        assert doc["metadata"]["name"], doc
    assert set(kustomization["resources"]) == files
    # AND not the backfill Job: a one-off run (`kubectl create -f`), whose pod template is immutable
    assert BACKFILL_JOB not in kustomization["resources"]
    assert (KUBERNETES / BACKFILL_JOB).is_file()
    assert {image["name"] for image in kustomization["images"]} == {
        _kind("Deployment")["spec"]["template"]["spec"]["containers"][0]["image"].split(":")[0]
    }


def test_kubernetes_deployment_is_safe_to_scale_stop_and_probe() -> None:
    # GIVEN the worker's Deployment
    deployment = _kind("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {item["name"]: item["value"] for item in container["env"]}
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    # THEN replicas share a DynamoDB lease table
    assert deployment["spec"]["replicas"] > 1
    assert env["CDCSYNC_CHECKPOINTS"].startswith("dynamodb://")
    # AND the probes hit /readyz and /healthz on the port CDCSYNC_METRICS_ADDR listens on
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert ports[container["readinessProbe"]["httpGet"]["port"]] == int(
        env["CDCSYNC_METRICS_ADDR"].split(":")[1]
    )
    # AND SIGKILL comes only after the 30 s drain (SHUTDOWN_SECONDS plus the final checkpoint and release)
    assert SHUTDOWN_SECONDS < 30 <= pod["terminationGracePeriodSeconds"] - 5
    # AND it runs as non-root on a read-only root filesystem, writing only to an emptyDir /tmp
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert "emptyDir" in volumes[mounts["/tmp"]]  # noqa: S108 - the pod's /tmp mount, not a temp file
    # AND the mappings come from the ConfigMap, and resources are bounded
    assert (
        volumes[mounts[env["CDCSYNC_MAPPINGS"]]]["configMap"]["name"]
        == _kind("ConfigMap")["metadata"]["name"]
    )
    assert set(container["resources"]) == {"requests", "limits"}
    assert pod["serviceAccountName"] == _kind("ServiceAccount")["metadata"]["name"]


def test_kubernetes_deployment_env_is_valid_settings() -> None:
    # GIVEN the CDCSYNC_* environment of the Deployment
    (container,) = _kind("Deployment")["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item["value"] for item in container["env"] if item["name"].startswith("CDCSYNC_")}
    # WHEN loaded as settings THEN every name and value is accepted
    load_settings(**{name.removeprefix("CDCSYNC_").lower(): value for name, value in env.items()})


def test_kubernetes_service_account_is_annotated_for_irsa() -> None:
    annotations = _kind("ServiceAccount")["metadata"]["annotations"]
    assert re.fullmatch(r"arn:aws:iam::\d{12}:role/.+", annotations["eks.amazonaws.com/role-arn"])


def test_kubernetes_service_and_monitor_reach_the_metrics_port() -> None:
    # GIVEN the Service, the ServiceMonitor and the pod labels
    service, monitor = _kind("Service"), _kind("ServiceMonitor")
    pod_labels = _kind("Deployment")["spec"]["template"]["metadata"]["labels"]
    # THEN the Service selects the pods, and the ServiceMonitor selects the Service's named port
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= {p["name"] for p in service["spec"]["ports"]}
    assert {e["path"] for e in monitor["spec"]["endpoints"]} == {"/metrics"}


def test_kubernetes_service_keeps_not_ready_pods_scraped() -> None:
    # A worker that is not ready (a table or shard stopped on an error) must still show its lag
    assert _kind("Service")["spec"]["publishNotReadyAddresses"] is True


def test_kubernetes_configmap_holds_the_shipped_users_mapping(tmp_path: Path) -> None:
    # GIVEN the ConfigMap's mapping files
    data = _kind("ConfigMap")["data"]
    # THEN they are the shipped mappings and load without problems
    assert data["users.yaml"] == (ROOT / "mappings" / "users.yaml").read_text()
    for name, text in data.items():
        (tmp_path / name).write_text(text)
    assert load_mappings(tmp_path).tables == ("Users",)


def _port_rules(rule: dict[str, Any]) -> set[tuple[int, str]]:
    return {(port["port"], port["protocol"]) for port in rule["ports"]}


def _kustomize_patch(kind: str) -> tuple[str, Any]:
    """The JSON patch kustomization.yaml applies to ``kind``: (path, value) of its one operation."""
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    (patch,) = [p for p in kustomization.get("patches", []) if p["target"]["kind"] == kind]
    (operation,) = yaml.safe_load(patch["patch"])
    assert operation["op"] == "replace"
    return operation["path"], operation["value"]


def _at(document: Any, pointer: str) -> Any:
    for part in pointer.strip("/").split("/"):
        document = document[int(part)] if isinstance(document, list) else document[part]
    return document


def test_kubernetes_network_policy_admits_metrics_only_from_the_monitoring_namespace() -> None:
    # GIVEN the NetworkPolicy, the pods and the metrics port they listen on
    policy = _kind("NetworkPolicy")
    (container,) = _kind("Deployment")["spec"]["template"]["spec"]["containers"]
    metrics_port = next(p["containerPort"] for p in container["ports"] if p["name"] == "metrics")
    pod_labels = _kind("Deployment")["spec"]["template"]["metadata"]["labels"]
    # THEN it applies to the worker's pods and the backfill Job's, both ways
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    job_pod_labels = _kind("Job")["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= job_pod_labels.items()
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    # AND the one ingress rule admits the metrics port only from namespaces with the monitoring label
    (rule,) = policy["spec"]["ingress"]
    assert _port_rules(rule) == {(metrics_port, "TCP")}
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    # AND that label is the parameter kustomization.yaml sets, on the very selector
    path, value = _kustomize_patch("NetworkPolicy")
    assert _at(policy, path) == value == {"kubernetes.io/metadata.name": "monitoring"}


def test_kubernetes_network_policy_egress_is_dns_then_only_443_and_9200() -> None:
    # GIVEN the NetworkPolicy's egress rules
    dns, out = _kind("NetworkPolicy")["spec"]["egress"]
    # THEN DNS goes only to the cluster's DNS pods
    assert _port_rules(dns) == {(53, "UDP"), (53, "TCP")}
    assert dns["to"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        }
    ]
    # AND everything else is TCP 443 and 9200, never to link-local addresses (instance metadata)
    assert _port_rules(out) == {(443, "TCP"), (9200, "TCP")}
    blocks = {peer["ipBlock"]["cidr"]: peer["ipBlock"]["except"] for peer in out["to"]}
    assert blocks == {"0.0.0.0/0": ["169.254.0.0/16"], "::/0": ["fe80::/10", "fd00:ec2::/32"]}


def test_kubernetes_pod_disruption_budget_drains_one_replica_at_a_time() -> None:
    # GIVEN the PodDisruptionBudget and the Deployment
    budget, deployment = _kind("PodDisruptionBudget"), _kind("Deployment")
    # THEN it covers the worker's pods and leaves all but one replica up during a drain
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert budget["spec"]["maxUnavailable"] == 1 < deployment["spec"]["replicas"]
    # AND a replica that is not ready (one table stopped on an error) does not block the drain
    assert budget["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def _job_pod() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    job = _kind("Job")
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return job, pod, container


def test_kubernetes_backfill_job_pods_join_one_run_on_the_lease_table() -> None:
    # GIVEN the backfill Job, its one container, and the worker's Deployment
    job, pod, container = _job_pod()
    worker_pod = _kind("Deployment")["spec"]["template"]["spec"]
    (worker,) = worker_pod["containers"]
    env = {item["name"]: item["value"] for item in container["env"]}
    worker_env = {item["name"]: item["value"] for item in worker["env"]}
    # THEN it is an Indexed Job: every index is one process on the run, parallelism processes at once
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["parallelism"] == job["spec"]["completions"] > 1
    # AND every pod runs the same command: join the run RUN_ID of table TABLE (expanded by Kubernetes)
    assert container["args"] == ["backfill", "--table", "$(TABLE)", "--run-id", "$(RUN_ID)"]
    assert env["TABLE"] in load_mappings(ROOT / "mappings").tables
    assert env["RUN_ID"]
    # AND the units are claimed in the worker's dynamodb:// checkpoint table (several machines), with the
    # worker's OpenSearch, dead-letter queue and region
    assert env["CDCSYNC_CHECKPOINTS"].startswith("dynamodb://")
    for name in (
        "AWS_REGION",
        "CDCSYNC_CHECKPOINTS",
        "CDCSYNC_OPENSEARCH_URL",
        "CDCSYNC_OPENSEARCH_AUTH",
        "CDCSYNC_DLQ",
        "CDCSYNC_MAPPINGS",
    ):
        assert env[name] == worker_env[name], name
    settings = {k.removeprefix("CDCSYNC_").lower(): v for k, v in env.items() if k.startswith("CDCSYNC_")}
    load_settings(**settings)
    # AND the same IRSA ServiceAccount, ConfigMap-mounted mappings, image and security context
    assert (
        pod["serviceAccountName"]
        == worker_pod["serviceAccountName"]
        == _kind("ServiceAccount")["metadata"]["name"]
    )
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"] == worker_pod["securityContext"]
    assert container["securityContext"] == worker["securityContext"]
    assert container["image"] == worker["image"]
    assert container["volumeMounts"] == worker["volumeMounts"]
    assert pod["volumes"] == worker_pod["volumes"]
    # AND CPU and memory are requested (the scheduler places pods by them) and bounded
    assert (
        set(container["resources"]["requests"]) == set(container["resources"]["limits"]) == {"cpu", "memory"}
    )


def _pod_failure_action(job: dict[str, Any], exit_code: int, conditions: set[str]) -> str:
    """What the Job controller does with a failed pod: the first podFailurePolicy rule that matches,
    else Count (against backoffLimitPerIndex), as Kubernetes evaluates them."""
    for rule in job["spec"]["podFailurePolicy"]["rules"]:
        codes = rule.get("onExitCodes")
        if codes is not None:
            matched = exit_code in codes["values"]
            if (codes["operator"] == "In") == matched and codes.get("containerName", "cdcsync") == "cdcsync":
                return str(rule["action"])
        if any(
            c["type"] in conditions and c.get("status", "True") == "True"
            for c in rule.get("onPodConditions", [])
        ):
            return str(rule["action"])
    return "Count"


@pytest.mark.parametrize(
    ("exit_code", "conditions", "action"),
    [
        (EXIT_CONFIG, set(), "FailJob"),  # configuration: fails the same on every retry
        (137, set(), "Count"),  # SIGKILL mid-unit (OOM, a lost node): retried, its unit resumed
        (EXIT_PROBLEMS, set(), "Count"),  # stopped with units left (OpenSearch down): retried
        (137, {"DisruptionTarget"}, "Ignore"),  # evicted or drained: retried, not counted
        (143, {"DisruptionTarget"}, "Ignore"),  # SIGTERM of a drain
    ],
)
def test_kubernetes_backfill_job_pod_failure_policy_retries_kills_and_fails_on_configuration(
    exit_code: int, conditions: set[str], action: str
) -> None:
    # GIVEN the backfill Job
    job, pod, _ = _job_pod()
    # THEN the Job controller, not the kubelet, handles failed pods (podFailurePolicy requires it)
    assert pod["restartPolicy"] == "Never"
    # AND a failed pod is handled as the run needs: only exit 2 fails the Job at once
    assert _pod_failure_action(job, exit_code, conditions) == action
    # AND counted failures are retried per index, so one index's retries do not fail the run
    assert job["spec"]["backoffLimitPerIndex"] >= 3
    assert "backoffLimit" not in job["spec"]


def test_kubernetes_backfill_job_pods_are_left_out_of_worker_service_and_budget() -> None:
    # GIVEN the backfill Job's pod labels
    job_pod_labels = _kind("Job")["spec"]["template"]["metadata"]["labels"]
    # THEN neither the metrics Service nor the PodDisruptionBudget selects them (a PDB over a Job's
    # pods with maxUnavailable cannot be computed, and the Service has no metrics of theirs to scrape)
    for kind in ("Service", "PodDisruptionBudget"):
        selector = _kind(kind)["spec"]["selector"]
        selector = selector.get("matchLabels", selector)
        assert not selector.items() <= job_pod_labels.items(), kind


def _kubernetes_validate(*paths: Path) -> subprocess.CompletedProcess[str]:
    assert KUBERNETES_VALIDATE is not None
    return subprocess.run(
        [KUBERNETES_VALIDATE, "--strict", "--quiet", "-k", KUBERNETES_VERSION, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.skipif(
    KUBERNETES_VALIDATE is None,
    reason="kubernetes-validate is not installed: add kubernetes-validate to the dev extras",
)
def test_kubernetes_manifests_pass_kubernetes_validate() -> None:
    # WHEN kubernetes-validate checks every manifest against its bundled (offline) schemas, strictly
    result = _kubernetes_validate(*sorted(KUBERNETES.glob("*.yaml")))
    # THEN nothing fails; only the kinds it has no schema for (CRDs, the kustomization) are left out
    assert result.returncode == 0, result.stdout + result.stderr
    unchecked = set(re.findall(r"Couldn't find schema for kind (\w+)", result.stdout + result.stderr))
    assert unchecked == {"Kustomization", "ServiceMonitor", "PrometheusRule"}


@pytest.mark.skipif(
    KUBERNETES_VALIDATE is None,
    reason="kubernetes-validate is not installed: add kubernetes-validate to the dev extras",
)
def test_kubernetes_validate_fails_a_misspelled_field(tmp_path: Path) -> None:
    # GIVEN the PodDisruptionBudget with a field Kubernetes does not know
    text = (KUBERNETES / "poddisruptionbudget.yaml").read_text().replace("maxUnavailable", "maxUnavaliable")
    (tmp_path / "pdb.yaml").write_text(text)
    # THEN the check the Makefile runs fails on it (it is no check that cannot fail)
    assert _kubernetes_validate(tmp_path / "pdb.yaml").returncode != 0


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed (its kustomize renders the manifests)")
def test_kubernetes_kustomization_renders_with_the_monitoring_namespace_parameter(tmp_path: Path) -> None:
    # GIVEN an overlay of the manifests that sets another monitoring namespace label
    overlay = tmp_path / "overlay"
    shutil.copytree(KUBERNETES, overlay)
    text = (overlay / "kustomization.yaml").read_text()
    (overlay / "kustomization.yaml").write_text(
        text.replace("value: { kubernetes.io/metadata.name: monitoring }", "value: { team: observability }")
    )
    # WHEN kustomize renders it (offline, client side)
    assert KUBECTL is not None
    rendered = subprocess.run(
        [KUBECTL, "kustomize", str(overlay)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    documents = {doc["kind"]: doc for doc in yaml.safe_load_all(rendered)}
    # THEN the NetworkPolicy admits the metrics port from that namespace only, and the PDB is applied
    (rule,) = documents["NetworkPolicy"]["spec"]["ingress"]
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"team": "observability"}}}]
    assert "PodDisruptionBudget" in documents


# --- Compose ------------------------------------------------------------------------------------------
def _compose() -> dict[str, Any]:
    return yaml.safe_load((COMPOSE / "compose.yaml").read_text())


def test_compose_images_are_pinned_and_mounts_exist() -> None:
    # GIVEN the compose services
    services = _compose()["services"]
    for name, service in services.items():
        # THEN every image has an exact version tag (the worker is built from the Dockerfile)
        image = service.get("image", "")
        if "build" in service:
            assert (COMPOSE / service["build"]["context"] / service["build"]["dockerfile"]).is_file(), name
        else:
            assert re.fullmatch(r"[a-z0-9./-]+:v?\d+\.\d+\.\d+", image), (name, image)
        # AND every bind-mounted file or folder exists in the repository
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE / source).exists(), (name, source)


@pytest.mark.skipif(
    CHECK_JSONSCHEMA is None,
    reason="check-jsonschema is not installed: add check-jsonschema to the dev extras",
)
def test_compose_file_matches_the_compose_specification() -> None:
    # WHEN check-jsonschema validates compose.yaml against its vendored Compose Specification schema
    result = subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec", str(COMPOSE / "compose.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # THEN it is valid (offline: the schema ships with check-jsonschema)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_wires_worker_opensearch_prometheus_and_grafana() -> None:
    # GIVEN the compose services
    services = _compose()["services"]
    worker = services["cdcsync"]
    # THEN OpenSearch runs single-node with its security plugin (admin password set, not disabled)
    opensearch = services["opensearch"]["environment"]
    assert opensearch["discovery.type"] == "single-node"
    assert "OPENSEARCH_INITIAL_ADMIN_PASSWORD" in opensearch
    assert "DISABLE_SECURITY_PLUGIN" not in opensearch
    # AND the worker talks to it over TLS with basic auth, with valid settings
    env = {k: v for k, v in worker["environment"].items() if k.startswith("CDCSYNC_")}
    env["CDCSYNC_OPENSEARCH_PASSWORD"] = "not-a-real-password"  # noqa: S105 - placeholder for the check
    load_settings(**{name.removeprefix("CDCSYNC_").lower(): value for name, value in env.items()})
    assert env["CDCSYNC_OPENSEARCH_URL"].startswith("https://opensearch:")
    # AND DynamoDB Local is the AWS endpoint, and the worker waits for the table and the indices
    assert worker["environment"]["AWS_ENDPOINT_URL"] == "http://dynamodb:8000"
    assert worker["depends_on"]["dynamodb-init"]["condition"] == "service_completed_successfully"
    # AND Prometheus scrapes the worker's metrics port
    scrape = yaml.safe_load((COMPOSE / "prometheus" / "prometheus.yml").read_text())
    targets = {t for job in scrape["scrape_configs"] for c in job["static_configs"] for t in c["targets"]}
    port = env.get("CDCSYNC_METRICS_ADDR", Settings.model_fields["metrics_addr"].default).split(":")[1]
    assert f"cdcsync:{port}" in targets
    # AND Grafana provisions the dashboard from the folder holding cdcsync.json
    provider = yaml.safe_load((COMPOSE / "grafana/provisioning/dashboards/cdcsync.yaml").read_text())
    mounted = {v.split(":")[1]: v.split(":")[0] for v in services["grafana"]["volumes"]}
    folder = provider["providers"][0]["options"]["path"]
    assert (COMPOSE / mounted[folder] / "cdcsync.json").is_file()


def test_compose_worker_is_restarted_when_it_exits() -> None:
    assert _compose()["services"]["cdcsync"]["restart"] == "unless-stopped"


# --- Lambda: SAM template and serverless.yml ----------------------------------------------------------
def _generated(fmt: str) -> dict[str, Any]:
    text = lambda_config(load_mappings(ROOT / "mappings"), format=fmt, tables=["Users"])
    data = yaml.safe_load(text)
    return data["Events"]["UsersStream"] if fmt == "sam" else data["events"][0]


def test_sam_template_events_match_lambda_config() -> None:
    # GIVEN the SAM template's stream event WHEN compared with `cdcsync lambda-config --format sam`
    function = _cloudformation(DEPLOY / "lambda" / "template.yaml")["Resources"]["CdcsyncFunction"]
    # THEN they are the same, so the template follows the mappings
    assert function["Properties"]["Events"]["UsersStream"] == _generated("sam")


def test_serverless_events_match_lambda_config() -> None:
    # GIVEN the serverless.yml stream event WHEN compared with `cdcsync lambda-config --format serverless`
    function = _cloudformation(DEPLOY / "lambda" / "serverless.yml")["functions"]["onUserObjectChange"]
    # THEN they are the same
    assert function["events"] == [_generated("serverless")]


@pytest.mark.parametrize(
    ("path", "settings"),
    [
        ("template.yaml", lambda doc: (doc["Resources"]["CdcsyncFunction"]["Properties"], "Environment")),
        ("serverless.yml", lambda doc: (doc["provider"], "environment")),
    ],
)
def test_lambda_files_run_the_contract_handler_on_python312_arm64(path: str, settings: Any) -> None:
    # GIVEN the function definition and its environment
    function, env_key = settings(_cloudformation(DEPLOY / "lambda" / path))
    env = function[env_key]["Variables"] if env_key == "Environment" else function[env_key]
    lower = {key.lower(): value for key, value in function.items()}
    handler = (
        lower.get("handler")
        or _cloudformation(DEPLOY / "lambda" / path)["functions"]["onUserObjectChange"]["handler"]
    )
    # THEN the contract handler runs on Python 3.12 arm64, with SigV4, an SQS DLQ and bundled mappings
    module, _, name = handler.rpartition(".")
    assert handler == "cdcsync.aws_lambda.handler"
    assert callable(getattr(importlib.import_module(module), name))
    assert lower["runtime"] == "python3.12"
    assert lower.get("architectures", [lower.get("architecture")]) == ["arm64"]
    assert env["CDCSYNC_OPENSEARCH_AUTH"] == "sigv4"
    assert env["CDCSYNC_DLQ"]["Fn::" + ("Sub" if env_key == "Environment" else "Join")]
    assert env["CDCSYNC_MAPPINGS"] == "/var/task/mappings"
    assert {name.removeprefix("CDCSYNC_").lower() for name in env} <= set(Settings.model_fields)
    # AND the target is named: an OpenSearch Service domain, so the first event sends no GET / (which
    # the role, scoped to the index, may not send)
    assert env["CDCSYNC_TARGET"] == "opensearch"


def test_sam_template_role_allows_only_what_cdcsync_needs() -> None:
    # GIVEN the function's IAM role
    role = _cloudformation(DEPLOY / "lambda" / "template.yaml")["Resources"]["CdcsyncRole"]
    statements = role["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    actions = {
        s["Sid"]: sorted([s["Action"]] if isinstance(s["Action"], str) else s["Action"]) for s in statements
    }
    # THEN exactly these actions, none with wildcards, on named resources only (dead-letter writes are
    # CdcsyncDeadLetterWrites: see test_dead_letter_stores.py)
    assert actions == {
        "ReadStream": [
            "dynamodb:DescribeStream",
            "dynamodb:GetRecords",
            "dynamodb:GetShardIterator",
            "dynamodb:ListStreams",
        ],
        "ReadItems": ["dynamodb:BatchGetItem", "dynamodb:GetItem"],
        "WriteIndex": ["es:ESHttpGet", "es:ESHttpPost", "es:ESHttpPut"],
        "CheckIndexExists": ["es:ESHttpHead"],
        "DeleteVersionProbe": ["es:ESHttpDelete"],
        "ReadRebuildAliases": ["es:ESHttpGet"],
        "WriteRebuildCopies": ["es:ESHttpPost"],
        "WriteLogs": ["logs:CreateLogStream", "logs:PutLogEvents"],
    }
    assert all(s["Effect"] == "Allow" and s["Resource"] != "*" for s in statements)
    # AND OpenSearch only under the mapped index's path: cdcsync posts _bulk to /{index}/_bulk, so
    # the domain root's /_bulk (which could name any index in its body) is not granted; the
    # external-version check's HEAD /{index} and DELETE /{index}/_doc/{id} only there too (never
    # DELETE /{index}: the index itself)
    paths = {
        s["Sid"]: [path["Fn::Sub"].split(":domain/", 1)[1] for path in s["Resource"]]
        for s in statements
        if s["Sid"]
        in (
            "WriteIndex",
            "CheckIndexExists",
            "DeleteVersionProbe",
            "ReadRebuildAliases",
            "WriteRebuildCopies",
        )
    }
    assert paths == {
        "WriteIndex": ["${OpenSearchDomainName}/${IndexName}", "${OpenSearchDomainName}/${IndexName}/*"],
        "CheckIndexExists": ["${OpenSearchDomainName}/${IndexName}"],
        "DeleteVersionProbe": ["${OpenSearchDomainName}/${IndexName}/_doc/*"],
        # AND during a rebuild, every writer reads GET /_alias/*-rebuild and posts copies to the new
        # physical index (NAME-00000n) behind NAME-rebuild: only _bulk there, nothing else
        "ReadRebuildAliases": ["${OpenSearchDomainName}/_alias/*"],
        "WriteRebuildCopies": ["${OpenSearchDomainName}/${IndexName}-*/_bulk"],
    }


def test_serverless_role_writes_only_under_the_index_path() -> None:
    # GIVEN the serverless.yml role's OpenSearch statements
    provider = _cloudformation(DEPLOY / "lambda" / "serverless.yml")["provider"]
    statements = provider["iam"]["role"]["statements"]
    opensearch = [s for s in statements if any(str(a).startswith("es:") for a in s["Action"])]
    # THEN they name the mapped index's paths only, not the domain root's /_bulk, and grant the
    # external-version check's HEAD /{index} and DELETE /{index}/_doc/{id} (never DELETE /{index})
    index = "${param:openSearchDomainName}/${param:indexName}"
    assert [
        (sorted(s["Action"]), [path.split(":domain/", 1)[1] for path in s["Resource"]]) for s in opensearch
    ] == [
        (["es:ESHttpGet", "es:ESHttpPost", "es:ESHttpPut"], [index, f"{index}/*"]),
        (["es:ESHttpHead"], [index]),
        (["es:ESHttpDelete"], [f"{index}/_doc/*"]),
        (["es:ESHttpGet"], ["${param:openSearchDomainName}/_alias/*"]),
        (["es:ESHttpPost"], [f"{index}-*/_bulk"]),
    ]


@pytest.mark.skipif(
    CFN_LINT is None,
    reason="cfn-lint is not installed: add cfn-lint to the dev extras (pip install cfn-lint)",
)
def test_sam_template_passes_cfn_lint() -> None:
    # WHEN cfn-lint checks the SAM template THEN it finds nothing
    result = subprocess.run(
        [str(CFN_LINT), "--", str(DEPLOY / "lambda" / "template.yaml")],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
