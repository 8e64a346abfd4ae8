"""docker-compose.yml and ops/ cannot run here (no Docker engine): check them statically."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def test_compose_services_and_commands() -> None:
    services = compose()["services"]
    assert set(services) == {"redis", "sandbox", "worker", "webhooks", "api"}
    assert services["webhooks"]["command"][:3] == ["python", "-m", "worker.webhook_receiver"]
    assert services["worker"]["command"] == ["arq", "worker.main.Settings"]
    assert services["sandbox"]["command"][:2] == ["predq", "sandbox"]
    assert services["api"]["command"][:2] == ["predq", "serve"]
    for name in ("worker", "api", "webhooks"):
        url = services[name]["environment"]["REDIS_URL"]
        assert url.startswith("redis://:${REDIS_PASSWORD") and url.endswith("@redis:6379/0")
    assert "--requirepass" in services["redis"]["command"]
    assert "ports" not in services["redis"]  # never published on the host's 6379
    worker_env = services["worker"]["environment"]
    assert worker_env["REPLICATE_API_TOKEN"] == "${REPLICATE_API_TOKEN:-}"
    assert "REPLICATE_BASE_URL" not in worker_env  # the sandbox only without a token:
    assert worker_env["PREDQ_SANDBOX_URL"] == "http://sandbox:8787"
    grace = int(worker_env["PREDQ_SHUTDOWN_GRACE_S"])
    assert int(services["worker"]["stop_grace_period"].rstrip("s")) > grace


def test_the_grafana_dashboard_charts_metrics_predq_exports() -> None:
    import json

    dashboard = json.loads((ROOT / "ops" / "grafana" / "predq.json").read_text())
    exported = set(re.findall(r'"(predq_[a-z_]+)"', (ROOT / "worker" / "metrics.py").read_text()))
    exported |= set(re.findall(r'"(predq_[a-z_]+)"', (ROOT / "api" / "metrics.py").read_text()))
    exported |= {f"{name}_total" for name in exported}
    exported |= {f"{name}_{part}" for name in exported for part in ("bucket", "sum", "count")}
    used = set()
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            used |= set(re.findall(r"predq_[a-z_]+", target["expr"]))
    assert used
    assert used <= exported, used - exported


def test_compose_paths_exist() -> None:
    services = compose()["services"]
    for name in ("sandbox", "worker", "webhooks", "api"):
        build = services[name]["build"]
        assert (ROOT / build["context"] / build["dockerfile"]).is_file()
    for volume in services["redis"]["volumes"]:
        source = volume.split(":")[0]
        if source.startswith("./"):
            assert (ROOT / source).is_file(), source


def test_dockerfile_copies_what_exists() -> None:
    dockerfile = (ROOT / "ops" / "Dockerfile").read_text()
    for sources in re.findall(r"^COPY (.+) \S+$", dockerfile, flags=re.MULTILINE):
        for source in sources.split():
            assert (ROOT / source).exists(), source


def test_redis_conf_keeps_jobs() -> None:
    settings = dict(
        line.split(None, 1)
        for line in (ROOT / "ops" / "redis.conf").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    assert settings["appendonly"] == "yes"
    assert settings["appendfsync"] in {"always", "everysec"}
    assert settings["maxmemory-policy"] == "noeviction"
