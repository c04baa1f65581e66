"""The real pull of SmolLM2 from its wheel, offline: the wheel is read from a local directory
(MODEL_WHEEL_DIR, default ../cache/wheels beside the checkout); without it these tests skip."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kernel.errors import ModelError
from kernel.settings import Settings
from model.acquire.catalog import CATALOG, PROVENANCE_FILE
from model.acquire.sanity import DEFAULT_BOUNDS, check_model
from model.drafter import DraftRequest, ModelDrafter
from model.loader import load_model
from radflow.services import ensure_model
from tests.unit.test_pull import _without_merges

WHEELS = Path(os.environ.get("MODEL_WHEEL_DIR") or Path(__file__).resolve().parents[2].parent / "cache" / "wheels")
SMOL = CATALOG["smollm2-135m"].gguf_parts[0]

pytestmark = [
    pytest.mark.wheel,
    pytest.mark.skipif(not any(WHEELS.glob(f"{SMOL.wheel_prefix}*.whl")),
                       reason=f"no {SMOL.requirement} wheel in {WHEELS} (set MODEL_WHEEL_DIR); tests never download"),
]


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Pulled the way `radflow demo --model smollm2-135m` does when it is missing."""
    settings = Settings(home=tmp_path_factory.mktemp("home"), model_path="smollm2-135m", wheel_dir=str(WHEELS))
    return ensure_model(settings, progress=False)


def test_the_real_wheel_pulls_and_passes_the_sanity_check(smollm2: Path) -> None:
    meta = json.loads((smollm2 / PROVENANCE_FILE).read_text())
    assert meta["gguf_sha256"] == CATALOG["smollm2-135m"].gguf_sha256
    for language, loss in meta["sanity"]["losses_per_char"].items():
        assert loss < DEFAULT_BOUNDS.max_loss[language]
    assert meta["sanity"]["en_chars_per_token"] > 4  # byte-level BPE with real merges
    tok = load_model(smollm2, device="cpu").tokenizer
    assert tok.eos_token == "<|im_end|>" and tok.chat_template


def test_the_real_model_with_a_character_level_tokenizer_is_refused(smollm2: Path) -> None:
    loaded = load_model(smollm2, device="cpu")
    with pytest.raises(ModelError, match="tokenizer looks broken"):
        check_model(loaded.model, _without_merges(loaded.tokenizer))


def test_the_real_model_drafts_an_impression(smollm2: Path) -> None:
    drafter = ModelDrafter(load_model(smollm2, device="cpu"), max_new_tokens=32)
    [draft] = drafter.draft([DraftRequest("IU", "1", "The lungs are clear. No pleural effusion or pneumothorax. "
                                                     "Heart size is normal.", "en")])
    assert draft.text and draft.model_id.startswith("smollm2-135m@b179c9523d0e6a0f")
