"""Rebuilding a SentencePiece-BPE tokenizer (Gemma 3) from a GGUF file's own vocabulary.

transformers 5.17 converts Gemma's GGUF vocabulary into a Unigram model; with Gemma 3's scores
that spells English one character at a time (loss ≈ ln(262k) on plain English). The GGUF holds
what SentencePiece used: pieces, scores (for a BPE model, minus the merge rank) and token types.
From them we build a byte-fallback BPE the `tokenizers` library runs, as SentencePiece does:
spaces become "▁", user-defined pieces (newlines, runs of spaces, a few tags) are matched whole,
every piece is merged from two pieces in the order of its score, and unknown bytes fall back to
"<0xNN>" pieces. The sanity check (model/acquire/sanity.py) then verifies the result on real sentences.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kernel.errors import ModelError

SPACE = "▁"  # SentencePiece's visible space
# GGUF token types (llama.cpp's llama_token_type)
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


def _reader_values(gguf_path: Path):  # -> Callable[[str, Any], Any]
    from gguf import GGUFReader

    reader = GGUFReader(str(gguf_path))  # memory-mapped: only what is read is paged in

    def value(key: str, default: Any = None) -> Any:
        f = reader.fields.get(key)
        return f.contents() if f is not None else default

    return value


def special_token_ids(gguf_path: Path) -> dict[str, int]:
    """bos/eos/unk/pad ids the GGUF declares (transformers' conversion of SmolLM2 names its
    chat-turn opener as EOS; generation must stop at the GGUF's EOS, "<|im_end|>")."""
    value = _reader_values(gguf_path)
    ids = {name: value(f"tokenizer.ggml.{key}_token_id") for name, key in
           (("bos_token", "bos"), ("eos_token", "eos"), ("unk_token", "unknown"), ("pad_token", "padding"))}
    return {name: int(i) for name, i in ids.items() if i is not None}


def read_vocabulary(gguf_path: Path) -> dict[str, Any]:
    """The tokenizer fields of a GGUF file, as plain Python values."""
    value = _reader_values(gguf_path)
    fields = {
        "model": value("tokenizer.ggml.model"),
        "tokens": value("tokenizer.ggml.tokens"),
        "scores": value("tokenizer.ggml.scores"),
        "types": value("tokenizer.ggml.token_type"),
        "bos": value("tokenizer.ggml.bos_token_id"),
        "eos": value("tokenizer.ggml.eos_token_id"),
        "unk": value("tokenizer.ggml.unknown_token_id"),
        "pad": value("tokenizer.ggml.padding_token_id"),
        "add_space_prefix": value("tokenizer.ggml.add_space_prefix", True),
        "chat_template": value("tokenizer.chat_template"),
    }
    if fields["model"] != "llama" or not fields["tokens"] or not fields["scores"] or not fields["types"]:
        raise ModelError(f"{gguf_path.name} has no SentencePiece vocabulary with scores and token types "
                         f"(tokenizer.ggml.model={fields['model']!r}); cannot rebuild its tokenizer")
    return fields


def bpe_merges(vocab: dict[str, int], scores: dict[str, float]) -> list[tuple[str, str]]:
    """Every (left, right) whose concatenation is a piece, most important merge first: pieces in
    descending score (SentencePiece BPE stores minus the merge rank), then by the parts' ids."""
    merges: list[tuple[float, int, int, str, str]] = []
    for piece, score in scores.items():
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in vocab and right in vocab:
                merges.append((-score, vocab[left], vocab[right], left, right))
    merges.sort()
    return [(left, right) for *_, left, right in merges]


def rebuild_tokenizer(gguf_path: Path):  # -> PreTrainedTokenizerFast
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, processors
    from transformers import PreTrainedTokenizerFast

    f = read_vocabulary(gguf_path)
    types: list[int] = [int(t) for t in f["types"]]
    # user-defined runs of spaces are stored with plain spaces; the normalized text has "▁"
    tokens = [t.replace(" ", SPACE) if ty == USER_DEFINED else t for t, ty in zip(f["tokens"], types)]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise ModelError(f"{gguf_path.name}: {len(tokens) - len(vocab)} duplicate pieces in the vocabulary")
    normal = {tok: float(s) for tok, s, t in zip(tokens, f["scores"], types) if t == NORMAL}
    bpe = models.BPE(vocab=vocab, merges=bpe_merges(vocab, normal), unk_token=tokens[f["unk"]],
                     byte_fallback=True, fuse_unk=True)
    tok = Tokenizer(bpe)
    steps: list[normalizers.Normalizer] = [normalizers.Replace(" ", SPACE)]
    if f["add_space_prefix"]:
        steps.insert(0, normalizers.Prepend(SPACE))
    tok.normalizer = normalizers.Sequence(steps)
    decode = [decoders.Replace(SPACE, " "), decoders.ByteFallback(), decoders.Fuse()]
    if f["add_space_prefix"]:
        decode.append(decoders.Strip(" ", 1, 0))
    tok.decoder = decoders.Sequence(decode)
    # control pieces (<bos>, <start_of_turn>, ...) are special; user-defined ones are matched whole
    # in the (normalized) text, as SentencePiece matches them before merging
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types)
                            if ty == CONTROL])
    tok.add_tokens([AddedToken(t, special=False, normalized=True)
                    for t, ty in zip(tokens, types) if ty == USER_DEFINED])
    bos, eos = tokens[f["bos"]], tokens[f["eos"]]
    tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                       special_tokens=[(bos, f["bos"])])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=bos, eos_token=eos, unk_token=tokens[f["unk"]],
        pad_token=tokens[f["pad"]] if f["pad"] is not None else eos,
    )
    if f["chat_template"]:
        fast.chat_template = f["chat_template"]
    return fast
