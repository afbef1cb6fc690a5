"""What operators deploy: the Helm chart (linted and rendered by real Helm, every manifest
validated against the Kubernetes schemas, the configuration it renders accepted by
`sluice serve --check`), the compose file (validated against the Compose specification,
its environment accepted by `sluice serve --check`) and the Dockerfile."""

import os
import re
import subprocess
import sys
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from conftest import REPO, sluice_bin
from test_auth_tls_limits import self_signed

CHART = REPO / "helm" / "sluice"
PRODUCTION = CHART / "ci" / "production-values.yaml"
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest schemas.
KUBERNETES = ["1.25.0", kubernetes_validate.latest_version()]
VALUES = {"default": None, "production": PRODUCTION}


def values(name):
    path = VALUES[name]
    return yaml.safe_load(path.read_text()) if path else None


def render(name):
    with helm.Chart.load(str(CHART)) as chart:
        out = chart.render(values(name), name="sluice", namespace="analytics")
    docs = []
    for template, text in sorted(out.items()):
        if template.endswith(".yaml"):
            docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


def kind(docs, k, name=None):
    found = [d for d in docs if d["kind"] == k and (name is None or d["metadata"]["name"] == name)]
    assert found, f"no {k} {name or ''}"
    return found[0]


def check_config(env, config=None, *flags):
    """`sluice serve --check` with only `env` (and a config file) as its environment."""
    args = [sluice_bin(), "serve", "--check", *flags]
    if config:
        args += ["--config", str(config)]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    return subprocess.run(args, env={**clean, **env}, capture_output=True, text=True,
                          timeout=30)


@pytest.mark.parametrize("name", VALUES)
def test_the_chart_lints_clean(name):
    report = helm.lint(str(CHART), values(name), strict=True)
    assert report["errors"] == []
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert problems == [], problems


@pytest.mark.parametrize("version", KUBERNETES)
@pytest.mark.parametrize("name", VALUES)
def test_every_rendered_manifest_is_valid_kubernetes(name, version):
    docs = render(name)
    kinds = sorted(d["kind"] for d in docs)
    # The Secret holds at least the replicas' shared secret.
    expected = ["ConfigMap", "Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget",
                "Secret", "Service", "Service", "ServiceAccount"]
    assert kinds == sorted(expected)
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_deployment_probes_runs_unprivileged_and_is_bounded():
    docs = render("default")
    pod = kind(docs, "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == \
        {"flight-sql": 32010, "metrics": 9090, "mcp": 32011}
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["readOnlyRootFilesystem"]
    assert container["resources"]["requests"] and container["resources"]["limits"]
    # Kubernetes waits longer than Sluice lets queries drain.
    config = kind(docs, "ConfigMap")["data"]["sluice.toml"]
    grace = int(re.search(r"shutdown_grace_secs = (\d+)", config).group(1))
    assert pod["terminationGracePeriodSeconds"] > grace
    services = {s["metadata"]["name"]: s for s in docs if s["kind"] == "Service"}
    assert [p["targetPort"] for p in services["sluice"]["spec"]["ports"]] == ["flight-sql", "mcp"]
    assert "[mcp]\nlisten = \"0.0.0.0:32011\"" in config
    assert services["sluice-metrics"]["spec"]["ports"][0]["targetPort"] == "metrics"
    assert kind(docs, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]["name"] == "sluice"
    assert kind(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 1


def test_production_values_mount_tls_and_keep_secrets_out_of_the_configmap():
    docs = render("production")
    pod = kind(docs, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "sluice-tls"
    assert volumes["dataset"]["persistentVolumeClaim"] == \
        {"claimName": "sluice-dataset", "readOnly": True}
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["SLUICE_CLICKHOUSE__PASSWORD"]["valueFrom"]["secretKeyRef"] == \
        {"name": "clickhouse-credentials", "key": "password"}
    assert env["SLUICE_REDIS__PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == \
        "sluice-credentials"
    config = kind(docs, "ConfigMap")["data"]["sluice.toml"]
    secret = kind(docs, "Secret")["stringData"]
    for value in ("change-me", "a-secret-of-at-least-thirty-two-bytes!!",
                  "replace-with-a-long-random-token"):
        assert value not in config
    assert "principals.toml" in secret and "redis-password" in secret


def rendered_files(name, folder):
    """The chart's sluice.toml (and principals.toml) written under `folder`, with the pod's
    mount points (/etc/sluice/...) moved there; returns the config path and the pod's
    environment from the chart's Secret."""
    docs = render(name)
    config = kind(docs, "ConfigMap")["data"]["sluice.toml"].replace("/etc/sluice/", f"{folder}/")
    (folder / "config").mkdir()
    path = folder / "config" / "sluice.toml"
    path.write_text(config)
    env = {}
    secrets = [d for d in docs if d["kind"] == "Secret"]
    if secrets:
        data = secrets[0]["stringData"]
        if "principals.toml" in data:
            (folder / "principals").mkdir()
            (folder / "principals" / "principals.toml").write_text(data["principals.toml"])
        for e in kind(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]:
            ref = e.get("valueFrom", {}).get("secretKeyRef", {})
            env[e["name"]] = data.get(ref.get("key"), "from-an-existing-secret") if ref \
                else e["value"]
    return path, env


def test_sluice_accepts_the_configuration_the_chart_renders(tmp_path):
    path, env = rendered_files("default", tmp_path)
    result = check_config(env, path)
    assert result.returncode == 0, result.stderr
    assert "listen = 0.0.0.0:32010 (plaintext)" in result.stdout
    assert "mcp.listen = 0.0.0.0:32011 (plaintext)" in result.stdout
    assert "server.shutdown_grace_secs = 30" in result.stdout
    # Every pod gets the replicas' secret from the chart's Secret, generated at install.
    assert len(env["SLUICE_SERVER__REPLICA_SECRET"]) >= 32
    assert "server.replica_secret = set (replicas sharing it answer each other's calls)" \
        in result.stdout


def test_sluice_accepts_the_production_configuration(tmp_path):
    (tmp_path / "tls").mkdir()
    self_signed(tmp_path / "tls")
    path, env = rendered_files("production", tmp_path)
    result = check_config(env, path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "(TLS)" in out
    # With ClickHouse, no dataset folder: everything from the configured sources.
    assert "data = none (every event and the catalog from the configured sources)" in out
    assert "clickhouse = http://clickhouse-cluster.analytics.svc:8123/sluice as sluice " \
           "(password set)" in out
    assert "redis = cluster redis://redis-cluster-0" in out and "(password set)" in out
    assert "principals = notebook (analyst), agent-u0001 (listener)" in out
    assert "jwt = HS256" in out
    assert "telemetry.otlp_endpoint = http://otel-collector.observability.svc:4318" in out
    for secret in ("change-me", "a-secret-of-at-least", "replace-with"):
        assert secret not in out


def test_the_compose_file_follows_the_compose_specification():
    result = subprocess.run(
        [str(Path(sys.executable).parent / "check-jsonschema"), "--builtin-schema",
         "vendor.compose-spec", str(REPO / "docker-compose.yml")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_sluice_accepts_the_compose_environment(tmp_path):
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    sluice = compose["services"]["sluice"]
    env = {k: str(v) for k, v in sluice["environment"].items()}
    assert sluice["depends_on"]["sluice-init"]["condition"] == "service_completed_successfully"
    # The configuration file the service mounts (its principals), as the container sees it.
    [mount] = sluice["configs"]
    assert env.pop("SLUICE_CONFIG") == mount["target"]
    config = tmp_path / "sluice.toml"
    config.write_text(compose["configs"][mount["source"]]["content"])
    result = check_config(env, config)
    assert result.returncode == 0, result.stderr
    assert "clickhouse = http://clickhouse:8123/sluice as sluice (password set)" in result.stdout
    assert "redis = redis://redis:6379/" in result.stdout
    assert "listen = 0.0.0.0:32010 (plaintext)" in result.stdout
    assert "mcp.listen = 0.0.0.0:32011 (plaintext)" in result.stdout
    # The image's own default refuses plaintext off loopback unless told otherwise.
    env.pop("SLUICE_TLS__ENABLED")
    refused = check_config(env, config)
    assert refused.returncode != 0 and "without TLS" in refused.stderr


def test_the_dockerfile_builds_sluice_and_runs_it_unprivileged():
    text = (REPO / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)", text, re.M)
    assert len(stages) == 2, "a build stage and a runtime stage"
    assert "cargo build --release --locked -p sluice" in text
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and not user[-1].startswith(("0", "root"))
    assert re.search(r"^EXPOSE 32010 32011 9090$", text, re.M)
    # The compose file's health check and the chart's probes use what the image has.
    assert "sluice probe" in " ".join(
        yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]["sluice"]
        ["healthcheck"]["test"])
