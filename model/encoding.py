"""Token sequences for causal-LM training: prompt + impression + EOS, loss on the impression only."""

from __future__ import annotations

from typing import Any

from model.prompts import template_for


def encode_pair(tokenizer: Any, findings: str, impression: str, language: str, family: str,
                max_length: int) -> tuple[list[int], list[int]]:
    """(prompt ids, target ids). A long prompt loses its oldest tokens, never the impression label."""
    prompt = template_for(language, family).render(findings)
    prompt_ids = [tokenizer.bos_token_id] + tokenizer.encode(prompt, add_special_tokens=False)
    target_ids = tokenizer.encode(impression, add_special_tokens=False) + [tokenizer.eos_token_id]
    target_ids = target_ids[: max_length // 2] if len(target_ids) > max_length // 2 else target_ids
    budget = max_length - len(target_ids)
    return prompt_ids[-budget:], target_ids


def pack(pairs: list[tuple[list[int], list[int]]], max_length: int) -> list[tuple[list[int], list[int]]]:
    """Concatenate examples into rows of at most ``max_length`` tokens, in order (as TRL's
    ConstantLengthDataset does; attention crosses example boundaries, labels do not mix). Each row
    is (input ids, labels with -100 on prompt tokens)."""
    rows: list[tuple[list[int], list[int]]] = []
    ids: list[int] = []
    labels: list[int] = []
    for prompt, target in pairs:
        seq = prompt + target
        if ids and len(ids) + len(seq) > max_length:
            rows.append((ids, labels))
            ids, labels = [], []
        ids = ids + seq
        labels = labels + [-100] * len(prompt) + target
    if ids:
        rows.append((ids, labels))
    return rows


def unpacked(pairs: list[tuple[list[int], list[int]]]) -> list[tuple[list[int], list[int]]]:
    return [(p + t, [-100] * len(p) + t) for p, t in pairs]


def collate(rows: list[tuple[list[int], list[int]]], pad_id: int) -> tuple[Any, Any, Any]:
    """Right-padded (input ids, labels, attention mask) tensors."""
    import torch

    width = max(len(ids) for ids, _ in rows)
    ids_t = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels_t = torch.full((len(rows), width), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (ids, labels) in enumerate(rows):
        ids_t[i, : len(ids)] = torch.tensor(ids)
        labels_t[i, : len(labels)] = torch.tensor(labels)
        mask[i, : len(ids)] = 1
    return ids_t, labels_t, mask
