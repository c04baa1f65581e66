import json
import subprocess
import sys
from pathlib import Path


def test_score_cli_scores_lines_and_skips_bad_ones(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("\n".join([
        json.dumps({"id": "a", "draft": "左肺下叶炎症。", "impression": "左肺下叶炎症。"}, ensure_ascii=False),
        json.dumps({"id": "b", "draft": "", "impression": "Small left pleural effusion."}),
        json.dumps({"id": "c", "impression": "missing draft"}),
        "not json",
    ]), encoding="utf-8")
    for workers in ("1", "2"):
        proc = subprocess.run([sys.executable, "-m", "radflow", "score", "--pairs", str(pairs), "--workers", workers],
                              capture_output=True, text=True, check=False, env={"PATH": "/usr/bin:/bin"})
        assert proc.returncode == 0, proc.stderr
        rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        assert [r["id"] for r in rows] == ["a", "b"]
        assert rows[0]["rougeL"] > 0.999 and rows[1]["rougeL"] == 0.0 and rows[1]["missed"] == ["effusion"]
        assert "line 3: missing" in proc.stderr and "line 4: not JSON" in proc.stderr
        assert "R-L" in proc.stderr


def test_score_cli_names_the_unreadable_file(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "radflow", "score", "--pairs", str(tmp_path / "nope.jsonl")],
                          capture_output=True, text=True, check=False, env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2 and "--pairs" in proc.stderr
