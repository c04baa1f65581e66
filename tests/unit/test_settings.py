import subprocess
import sys

import pytest

from kernel.errors import SettingsError
from kernel.settings import Settings


def test_defaults_and_overrides() -> None:
    s = Settings.from_env({"RADFLOW_PARTITIONS": "2", "RADFLOW_BROKER": "kafka://k:9092"})
    assert s.partitions == 2 and s.bootstrap_servers == "k:9092" and not s.embedded
    assert Settings.from_env({}).embedded


@pytest.mark.parametrize(
    ("env", "named"),
    [({"RADFLOW_MLLP_PORT": "abc"}, "RADFLOW_MLLP_PORT"), ({"RADFLOW_MLLP_PORT": "70000"}, "RADFLOW_MLLP_PORT"),
     ({"RADFLOW_PARTITONS": "2"}, "RADFLOW_PARTITONS"), ({"RADFLOW_BROKER": "localhost:9092"}, "RADFLOW_BROKER"),
     ({"RADFLOW_LOG_LEVEL": "LOUD"}, "RADFLOW_LOG_LEVEL")],
)
def test_bad_settings_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        Settings.from_env(env)


def test_every_field_documents_its_variable() -> None:
    for var, _default, doc in Settings.table():
        assert var.startswith("RADFLOW_") and doc


def test_cli_reports_bad_setting_in_one_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "radflow", "settings"], capture_output=True, text=True,
        env={"RADFLOW_DRAFT_BATCH": "0", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "RADFLOW_DRAFT_BATCH" in proc.stderr


def test_cli_reports_missing_model_in_one_line(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "radflow", "worker"], capture_output=True, text=True,
        env={"RADFLOW_MODEL_PATH": str(tmp_path / "nope"), "RADFLOW_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 2
    assert "RADFLOW_MODEL_PATH" in proc.stderr.strip().splitlines()[-1]
