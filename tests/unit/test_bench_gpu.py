"""bench/gpu.py --smoke: the GPU benchmark's code path, on CPU with a tiny Llama, checked by its JSON."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def _gpu_bench():
    spec = importlib.util.spec_from_file_location("bench_gpu", ROOT / "bench" / "gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_smoke_runs_every_row_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    _gpu_bench().main(["--smoke", "--batches", "1,8", "--json", str(out)])
    result = json.loads(out.read_text())
    assert result["smoke"] and result["device"] == "cpu"
    rows = result["drafting"]
    # every quant x batch x path, mixed adapters in each batch, none failed
    assert {(r["quant"].split(" ")[0], r["batch"], r["path"]) for r in rows} == {
        ("float32", b, p) for b in (1, 8) for p in ("hf", "static", "greedy")}
    assert len(rows) == 2 * 2 * 3 and not [r for r in rows if r["error"]]
    for r in rows:
        assert r["drafts_per_s"] > 0 and r["new_tokens"] >= 1 and r["ratio_vs_hf"] > 0
        # float32 greedy on CPU: radflow's paths draft exactly what generate drafts
        assert r["identical_to_hf"] == 1.0, r
    refit = {r["variant"]: r for r in result["refit"]}
    assert set(refit) == {"plain", "radflow"}
    assert all(r["tokens_per_s"] > 0 and r["loss"] > 0 for r in refit.values())
    # the same loss either way (HF's over the full vocabulary, radflow's on impression tokens only)
    assert refit["radflow"]["loss"] == pytest.approx(refit["plain"]["loss"], rel=0.05)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_run_of_the_benchmark(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    _gpu_bench().main(["--batches", "1", "--repeats", "1", "--refit-steps", "1", "--json", str(out)])
    result = json.loads(out.read_text())
    assert result["device"] != "cpu" and not [r for r in result["drafting"] if r["error"]]
