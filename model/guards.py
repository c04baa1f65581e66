"""Guards on generated text (the paper's two: empty output and repeated words)."""

from __future__ import annotations

import re

_SENTENCE = re.compile(r"[^。；;.!?！？\n]+[。；;.!?！？]?")


def cut_repetition(text: str, max_repeat: int = 2) -> tuple[str, bool]:
    """Drop repeated sentences and collapse character or word loops. Returns (text, changed)."""
    changed = False
    seen: set[str] = set()
    kept = []
    for sentence in _SENTENCE.findall(text):
        norm = re.sub(r"\W", "", sentence).lower()
        if norm and norm in seen:
            changed = True
            continue
        seen.add(norm)
        kept.append(sentence)
    out = "".join(kept).strip() if kept else text.strip()
    # a unit of 1-8 characters repeated more than max_repeat times in a row ("结节结节结节…")
    looped = re.sub(rf"(.{{1,8}}?)\1{{{max_repeat},}}", r"\1", out)
    if looped != out:
        changed = True
    return looped, changed


def is_empty(text: str) -> bool:
    return not re.sub(r"[\W_]", "", text)


def stop_at_labels(text: str, labels: list[str]) -> tuple[str, bool]:
    """End the impression where the model starts another prompt section ("Findings:", a system
    line) after it; a label it repeated at the very start is dropped. Returns (text, changed)."""
    out = text
    for label in labels:
        if label and out.startswith(label):
            out = out[len(label):].lstrip()
    cut = min((i for i in (out.find(label) for label in labels if label) if i > 0), default=-1)
    if cut > 0:
        out = out[:cut].rstrip()
    return out, out != text.strip()
