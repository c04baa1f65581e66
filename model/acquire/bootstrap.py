"""Bootstrap model: a tokenizer and a tiny Llama-shaped causal LM trained from a pairs JSONL.

No weights can be downloaded in the embedded default, so radflow trains its own small model
(seeded, reproducible) and caches it; real deployments point RADFLOW_MODEL_PATH at a checkpoint.
Loss is on the impression tokens only, as in the fine-tune of the paper.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kernel.errors import ModelError
from model.encoding import collate, encode_pair, unpacked
from model.prompts import template_for

log = logging.getLogger(__name__)

META_FILE = "radflow_model.json"
SPECIALS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
FORMAT_VERSION = 2  # bump when the bootstrap recipe changes, so cached models are retrained


@dataclass(frozen=True)
class BootstrapConfig:
    """Size and schedule of the bootstrap model (the tests use a smaller one)."""

    steps: int = 600
    vocab_size: int = 2000
    hidden_size: int = 128
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    intermediate_size: int = 352
    max_length: int = 320
    batch_size: int = 16
    lr: float = 3e-3
    seed: int = 7
    template_family: str = "1"

    def __post_init__(self) -> None:
        if self.steps < 3:
            raise ModelError(f"bootstrap steps must be at least 3 (RADFLOW_BOOTSTRAP_STEPS), got {self.steps}")
        if self.hidden_size % self.heads:
            raise ModelError("bootstrap hidden_size must be a multiple of heads")


def read_pairs(path: Path) -> list[dict]:
    rows = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            row = json.loads(line)
            if row.get("findings") and row.get("impression"):
                rows.append(row)
            else:
                log.warning("pairs line %d lacks findings or impression; skipped", n)
    if not rows:
        raise ModelError(f"{path} has no usable findings/impression pairs")
    return rows


def cache_key(pairs_path: Path, config: BootstrapConfig) -> str:
    digest = hashlib.sha256(pairs_path.read_bytes())
    digest.update(json.dumps(asdict(config), sort_keys=True).encode())
    digest.update(str(FORMAT_VERSION).encode())
    return digest.hexdigest()[:16]


def is_current(out_dir: Path, key: str) -> bool:
    meta = out_dir / META_FILE
    return meta.is_file() and json.loads(meta.read_text()).get("cache_key") == key


def bootstrap(
    pairs_path: Path,
    out_dir: Path,
    config: BootstrapConfig = BootstrapConfig(),
    progress: bool = True,
    on_step: Callable[[int, float], None] | None = None,
) -> Path:
    """Train (or reuse, when the cached one matches) the bootstrap model into ``out_dir``."""
    key = cache_key(pairs_path, config)
    if is_current(out_dir, key):
        log.info("bootstrap model is cached at %s", out_dir)
        return out_dir
    import torch

    rows = read_pairs(pairs_path)
    random.seed(config.seed)
    torch.manual_seed(config.seed)  # seeded before the model's initial weights are drawn
    tokenizer = train_tokenizer(rows, config.vocab_size)
    examples = [encode_pair(tokenizer, row["findings"], row["impression"], row.get("language") or "en",
                            config.template_family, config.max_length) for row in rows]
    model = _llama(config, tokenizer)
    started = time.time()
    final_loss = _train(model, tokenizer, examples, config, progress, on_step)
    model.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    meta = {
        "cache_key": key,
        "kind": "bootstrap",
        "template_family": config.template_family,
        "config": asdict(config),
        "pairs": str(pairs_path),
        "pairs_count": len(rows),
        "final_loss": final_loss,
        "train_seconds": round(time.time() - started, 1),
    }
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=2))
    return out_dir


def _llama(config: BootstrapConfig, tokenizer: Any) -> Any:
    """A freshly initialised small Llama sized by ``config``, its vocabulary the tokenizer's."""
    from transformers import LlamaConfig, LlamaForCausalLM

    model_config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.layers,
        num_attention_heads=config.heads,
        num_key_value_heads=config.kv_heads,
        max_position_embeddings=max(512, config.max_length + 128),
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(model_config)


def _train(model: Any, tokenizer: Any, examples: list[Any], config: BootstrapConfig, progress: bool,
           on_step: Callable[[int, float], None] | None) -> float:
    """``config.steps`` optimizer steps on batches drawn without replacement (reshuffled when the
    examples run out), one-cycle learning rate; the last step's loss."""
    import torch
    from tqdm.auto import tqdm

    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=config.steps,
                                                   pct_start=max(0.1, 2 / config.steps))  # a warm-up of 2 steps at least
    model.train()
    rng = random.Random(config.seed)
    order: list[int] = []
    bar = tqdm(range(config.steps), desc="bootstrap model", disable=not progress, unit="step")
    for step in bar:
        if len(order) < config.batch_size:
            order += rng.sample(range(len(examples)), len(examples))
        batch = [examples[order.pop()] for _ in range(config.batch_size)]
        input_ids, labels, mask = collate(unpacked(batch), tokenizer.pad_token_id)
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if on_step:
            on_step(step, loss.item())
    return float(loss.item())


def train_tokenizer(rows: list[dict], vocab_size: int):  # -> PreTrainedTokenizerFast
    """A BPE tokenizer whose alphabet is every character seen: each Chinese character is a token,
    English words are merged from letters."""
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=SPECIALS["unk_token"]))
    # NFC, not NFKC: NFKC folds full-width "；，" into ";," and drafts would lose the radiologists'
    # punctuation (which ROUGE on jieba tokens counts).
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    texts = []
    for row in rows:
        language = row.get("language") or "en"
        texts.append(template_for(language).render(row["findings"]) + row["impression"])
    alphabet = sorted({ch for text in texts for ch in text})
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIALS.values()), initial_alphabet=alphabet, show_progress=False
    )
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIALS)
    fast.padding_side = "left"
    return fast
