"""The production docker-compose file is valid (no Docker engine runs here, so nothing starts)."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is absent (Debian package)")
def test_docker_compose_config_accepts_the_file() -> None:
    env = {**os.environ, "RADFLOW_DASHBOARD_TOKEN": "x", "POSTGRES_PASSWORD": "y"}
    proc = subprocess.run(["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config"], capture_output=True,
                          text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    for service in ("kafka", "postgres", "ingest", "drafter", "quality", "trainer"):
        assert f"  {service}:" in proc.stdout
    assert "driver: nvidia" in proc.stdout and "healthcheck" in proc.stdout


def test_compose_requires_a_dashboard_token() -> None:
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is absent (Debian package)")
    env = {**{k: v for k, v in os.environ.items() if k != "RADFLOW_DASHBOARD_TOKEN"}, "POSTGRES_PASSWORD": "y"}
    proc = subprocess.run(["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config"], capture_output=True,
                          text=True, env=env, check=False)
    assert proc.returncode != 0 and "RADFLOW_DASHBOARD_TOKEN" in proc.stderr
