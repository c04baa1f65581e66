"""The model layer on a real (tiny) model trained in seconds by the session fixture."""

import json
import os
from pathlib import Path

import pytest

from kernel.errors import ModelError
from model.acquire.bootstrap import META_FILE, bootstrap, is_current
from model.drafter import DraftRequest, EchoDrafter, ModelDrafter
from model.guards import cut_repetition, is_empty
from model.loader import load_model
from model.prompts import TEMPLATES, template_for
from tests.conftest import TINY


def test_bootstrap_is_cached(tiny_model: Path, pairs_file: Path) -> None:
    meta = json.loads((tiny_model / META_FILE).read_text())
    assert meta["kind"] == "bootstrap" and meta["template_family"] == "1"
    before = os.stat(tiny_model / "model.safetensors").st_mtime_ns
    bootstrap(pairs_file, tiny_model, TINY, progress=False)
    assert os.stat(tiny_model / "model.safetensors").st_mtime_ns == before
    assert is_current(tiny_model, meta["cache_key"])


def test_loader_names_the_setting_for_a_bad_path(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="RADFLOW_MODEL_PATH"):
        load_model(tmp_path / "missing")


def test_drafts_a_batch(tiny_model: Path, pairs_file: Path) -> None:
    rows = [json.loads(line) for line in pairs_file.read_text().splitlines()][:6]
    drafter = ModelDrafter(load_model(tiny_model), max_new_tokens=24)
    drafts = drafter.draft([DraftRequest(r["institution"], r["accession"], r["findings"], r["language"]) for r in rows])
    assert len(drafts) == 6
    for d in drafts:
        assert d.template_id in TEMPLATES and d.model_id.startswith("tiny@")
        assert d.guard in ("", "repetition", "retried-empty", "empty")
        assert d.text or d.guard == "empty"


def test_greedy_drafts_are_reproducible(tiny_model: Path) -> None:
    drafter = ModelDrafter(load_model(tiny_model), max_new_tokens=16)
    request = [DraftRequest("XIHE", "1", "左肺下叶见斑片状高密度影，边缘模糊。", "zh")]
    assert drafter.draft(request)[0].text == drafter.draft(request)[0].text


def test_guards() -> None:
    assert cut_repetition("左肺结节。左肺结节。右肺炎症。") == ("左肺结节。右肺炎症。", True)
    assert cut_repetition("结节结节结节结节")[1]
    assert cut_repetition("Left knee effusion.") == ("Left knee effusion.", False)
    assert is_empty(" 。 ") and not is_empty("左")


def test_templates_are_five_per_language() -> None:
    assert sum(t.startswith("zh-") for t in TEMPLATES) == 5 and sum(t.startswith("en-") for t in TEMPLATES) == 5
    prompt = template_for("zh").render("左肺结节。")
    assert prompt.startswith("你是一名放射科医生") and prompt.endswith("诊断：")


def test_echo_drafter_is_the_last_sentence() -> None:
    [d] = EchoDrafter().draft([DraftRequest("A", "1", "左肺结节。右肺炎症。", "zh")])
    assert d.text == "右肺炎症。"


def test_tokenizer_keeps_full_width_punctuation(tiny_model: Path) -> None:
    # regression: an NFKC normaliser turned "；，" into ";," in every draft
    tokenizer = load_model(tiny_model).tokenizer
    text = "左肺纤维灶；右肺上叶磨玻璃结节，请随访。"
    assert tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)).replace(" ", "") == text


@pytest.mark.gpu
def test_cuda_loads_4bit_nf4_and_drafts(tiny_model: Path) -> None:
    """The CUDA path: bitsandbytes 4-bit nf4 weights on the GPU, drafting as on the CPU."""
    pytest.importorskip("bitsandbytes")
    loaded = load_model(tiny_model, device="cuda")
    assert loaded.quantized and loaded.device == "cuda"
    assert next(loaded.model.parameters()).device.type == "cuda"
    [draft] = ModelDrafter(loaded, max_new_tokens=8).draft([DraftRequest("XIHE", "A1", "右肺上叶见结节。", "zh")])
    assert draft.model_id.startswith("tiny@")
