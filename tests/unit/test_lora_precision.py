"""bf16 autocast in CPU training (the recipe's ``cpu_bf16``): the same run, a different precision
of the arithmetic, float32 adapter weights either way. bench/cpu_bf16_training.py measures what
it does to adapter quality on real reports."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from radflow.demodata import generate_reports
from training.dataset import Example
from training.lora import train_adapter
from training.recipe import Recipe


def test_cpu_bf16_trains_in_bf16_and_keeps_float32_adapters(tiny_model: Path, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    examples = [Example(r.institution, r.accession, str(r.body_system), r.language, r.findings, r.impression)
                for r in generate_reports(4, seed=11)][:16]
    recipe = Recipe(r=4, alpha=8, lr=3e-3, epochs=1, effective_batch=4, micro_batch=4, max_length=256,
                    packing=False, templates=("1",), checkpoint_every=50)
    assert not recipe.cpu_bf16  # off unless a recipe asks (bench/README.md says why)
    results, weights = {}, {}
    for bf16 in (False, True):
        r = dataclasses.replace(recipe, cpu_bf16=bf16)
        results[bf16] = train_adapter(tiny_model, examples, r, "1", tmp_path / f"out-{bf16}", "shared", "v0001",
                                      tmp_path / f"work-{bf16}", device="cpu", progress=False)
        weights[bf16] = load_file(results[bf16].adapter.path / "adapter_model.safetensors")
    assert results[False].steps == results[True].steps == 4
    assert {t.dtype for w in weights.values() for t in w.values()} == {torch.float32}
    # the same data, seed and schedule: only the arithmetic differs, so the runs end close but not equal
    assert results[True].final_loss != results[False].final_loss
    assert results[True].final_loss == pytest.approx(results[False].final_loss, rel=0.1)
    differs = max((weights[True][k] - weights[False][k]).abs().max().item() for k in weights[False])
    assert differs > 0
