"""Day-0 drafting grounded in similar cases (RadAlign's retrieval idea on an instruct base).

A new institution has no adapter yet. An instruction-tuned base (one whose tokenizer has a chat
template) drafts from a conversation: the paper's expert template as the system turn, the k most
similar signed cases of the same institution as worked examples (findings -> impression turns),
then the new findings. The chat template renders it, so the base sees the format it was tuned on.

The prompt stays within a token budget. What gives way, in order: the examples' findings (cut at
their end, down to a floor), then whole examples (the least similar first), then the end of the
new findings. The system turn and the new findings' labels are never cut.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from model.cases import Case
from model.prompts import PromptTemplate

#: An example's findings are not cut below this share of their length before examples are dropped.
MIN_EXAMPLE_SHARE = 0.25


@dataclass(frozen=True)
class FewShotPrompt:
    text: str  # rendered by the chat template, ending where the assistant's impression begins
    examples: int  # worked examples kept
    truncated: bool  # the new findings lost their end to fit (the examples' cuts do not count)


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def system_label(k: int) -> str:
    """What a draft records as the system that drafted it (the base with k cases in its prompt)."""
    return f"base+fewshot-k{k}"


def _query(template: PromptTemplate, findings: str) -> str:
    return f"{template.findings_label}{findings}\n{template.impression_label.strip()}"


def messages(template: PromptTemplate, findings: str, cases: Sequence[Case]) -> list[dict[str, str]]:
    """The conversation: instruction, worked examples (most similar last, nearest the query), query."""
    out = [{"role": "system", "content": f"{template.system}\n{template.instruction}"}]
    for case in reversed(cases):
        out.append({"role": "user", "content": _query(template, case.findings)})
        out.append({"role": "assistant", "content": case.impression})
    out.append({"role": "user", "content": _query(template, findings)})
    return out


def render(tokenizer: Any, template: PromptTemplate, findings: str, cases: Sequence[Case],
           max_tokens: int) -> FewShotPrompt:
    """The few-shot prompt of ``findings`` within ``max_tokens`` tokens (see the module's order)."""

    def build(examples: Sequence[Case], query: str) -> tuple[str, int]:
        text = tokenizer.apply_chat_template(messages(template, query, examples), tokenize=False,
                                             add_generation_prompt=True)
        return text, len(tokenizer.encode(text, add_special_tokens=False))

    cases = list(cases)
    text, n = build(cases, findings)
    # 1. cut the examples' findings, all by the same share, down to the floor
    share = 1.0
    while n > max_tokens and cases and share > MIN_EXAMPLE_SHARE:
        share = max(MIN_EXAMPLE_SHARE, share * max_tokens / n * 0.95)
        shorter = [replace(c, findings=c.findings[: max(1, int(len(c.findings) * share))]) for c in cases]
        text, n = build(shorter, findings)
        if n <= max_tokens:
            return FewShotPrompt(text, len(shorter), False)
    # 2. drop whole examples, the least similar first (``cases`` is ranked, most similar first)
    while n > max_tokens and cases:
        cases = cases[:-1]
        shorter = [replace(c, findings=c.findings[: max(1, int(len(c.findings) * share))]) for c in cases]
        text, n = build(shorter, findings)
    # 3. cut the end of the new findings; the labels and the instruction stay
    query = findings
    while n > max_tokens and len(query) > 1:
        query = query[: max(1, int(len(query) * max_tokens / n) - 8)]
        text, n = build([], query)
    return FewShotPrompt(text, len(cases), query != findings)
