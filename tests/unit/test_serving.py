"""The decoding paths of model/serving.py on the tiny real model, with real peft adapters."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from kernel.errors import ModelError, SettingsError
from kernel.settings import Settings
from model.adapters import BASE, write_meta
from model.drafter import DraftRequest, ModelDrafter
from model.loader import load_model
from model.serving import Decoder, int8_linear


def _adapter(model_dir: Path, out: Path, name: str, seed: int) -> Path:
    """A LoRA adapter with random (non-zero) weights, so it changes what the model drafts."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    base = load_model(model_dir).model
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=32, target_modules=["q_proj", "v_proj", "down_proj"],
                                                 init_lora_weights=False))
    peft_model.save_pretrained(str(out))
    write_meta(out, name, "v0001", "1")
    return out


def _requests(pairs_file: Path, n: int) -> list[DraftRequest]:
    rows = [json.loads(line) for line in pairs_file.read_text().splitlines()][:n]
    return [DraftRequest(r["institution"], r["accession"], r["findings"], r["language"]) for r in rows]


def test_unknown_mode_names_the_setting() -> None:
    with pytest.raises(ModelError, match="RADFLOW_DECODE"):
        Decoder("fast")
    with pytest.raises(SettingsError, match="RADFLOW_DECODE"):
        Settings.from_env({"RADFLOW_DECODE": "fast"})
    assert Settings.from_env({"RADFLOW_DECODE": "int8"}).decode == "int8"


def test_greedy_loop_drafts_exactly_what_generate_drafts(tiny_model: Path, pairs_file: Path) -> None:
    loaded = load_model(tiny_model)
    requests = _requests(pairs_file, 8)  # mixed lengths and languages: left padding matters
    reference = ModelDrafter(loaded, max_new_tokens=24).draft(requests)
    for mode in ("greedy", "static"):
        drafts = ModelDrafter(loaded, max_new_tokens=24, decode=mode).draft(requests)
        assert [d.text for d in drafts] == [d.text for d in reference], mode


def test_mixed_adapter_batches_on_every_path(tiny_model: Path, pairs_file: Path, tmp_path: Path) -> None:
    from model.adapters import read_spec

    specs = {name: read_spec(_adapter(tiny_model, tmp_path / name, name, seed))
             for name, seed in (("XIHE", 1), ("shared", 2))}
    requests = _requests(pairs_file, 6)
    slots = [r.institution if i % 3 == 0 else ("shared" if i % 3 == 1 else BASE) for i, r in enumerate(requests)]
    requests = [DraftRequest(r.institution, r.accession, r.findings, r.language, adapter=s)
                for r, s in zip(requests, slots)]
    texts = {}
    for mode in ("hf", "greedy", "int8"):
        drafter = ModelDrafter(load_model(tiny_model), max_new_tokens=16, decode=mode)
        drafter.set_adapters({"XIHE": specs["XIHE"], "shared": specs["shared"], **{r.institution: specs["XIHE"]
                                                                                    for r in requests}})
        texts[mode] = [d.text for d in drafter.draft(requests)]
        # the float model is left as loaded: no int8 layer stays behind after the call
        assert not any(type(m).__name__ == "Int8Linear" for m in drafter.model.modules())
    assert texts["greedy"] == texts["hf"]
    assert len(texts["int8"]) == len(requests) and all(isinstance(t, str) for t in texts["int8"])
    # the adapters change the drafts (so the test would notice them being ignored)
    unrouted = [dataclasses.replace(r, adapter=None) for r in requests]  # nothing serving: the base
    plain = [d.text for d in ModelDrafter(load_model(tiny_model), max_new_tokens=16).draft(unrouted)]
    assert plain != texts["hf"]


def test_int8_linear_is_close_to_the_float_layer() -> None:
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 32)
    x = torch.randn(5, 64)
    expected = linear(x)
    got = int8_linear(linear)(x)
    assert got.shape == expected.shape
    assert (got - expected).abs().max() < 0.05 * expected.abs().max()
