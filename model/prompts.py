"""Prompt templates after ChatRadio-Valuer: system description + expert instruction + findings.

Five templates per language, written in the paper's manner. The chosen template's id is saved
beside every model and adapter, so a model is never served with a prompt it was not trained on.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PromptTemplate:
    id: str
    system: str
    instruction: str
    findings_label: str
    impression_label: str

    def render(self, findings: str) -> str:
        """The prompt; the model's continuation is the impression."""
        return f"{self.system}\n{self.instruction}\n{self.findings_label}{findings}\n{self.impression_label}"


_ZH_SYSTEM = "你是一名放射科医生。"
_EN_SYSTEM = "You are a radiologist."

TEMPLATES: dict[str, PromptTemplate] = {
    t.id: t
    for t in (
        PromptTemplate("zh-1", _ZH_SYSTEM, "根据影像所见写出诊断意见。", "所见：", "诊断："),
        PromptTemplate("zh-2", _ZH_SYSTEM, "请总结以下检查所见，给出简明的影像诊断。", "检查所见：", "影像诊断："),
        PromptTemplate("zh-3", _ZH_SYSTEM, "请按重要性列出阳性发现的诊断，无异常时写未见明显异常。", "描述：", "印象："),
        PromptTemplate("zh-4", "你是一名资深放射科医生，负责审核报告。", "阅读检查所见，写出结论，避免漏诊和过度诊断。", "所见：", "结论："),
        PromptTemplate("zh-5", _ZH_SYSTEM, "作为放射科专家，将下列影像表现归纳为诊断意见。", "影像表现：", "诊断意见："),
        PromptTemplate("en-1", _EN_SYSTEM, "Write the impression for these findings.", "Findings: ", "Impression: "),
        PromptTemplate("en-2", _EN_SYSTEM, "Summarize the findings into a concise impression.", "Findings: ", "Impression: "),
        PromptTemplate("en-3", _EN_SYSTEM, "List the diagnoses by importance; if normal, say so.", "Findings: ", "Impression: "),
        PromptTemplate("en-4", "You are a senior radiologist reviewing reports.", "Write a conclusion without missing or over-calling findings.", "Findings: ", "Conclusion: "),
        PromptTemplate("en-5", _EN_SYSTEM, "As a radiology expert, state the impression.", "Report findings: ", "Impression: "),
    )
}

DEFAULT_TEMPLATE = {"zh": "zh-1", "en": "en-1"}


def template_for(language: str, family: str | None = None) -> PromptTemplate:
    """The template of ``family`` (its number, e.g. "1") in ``language``; the default otherwise."""
    if family:
        return TEMPLATES[f"{'zh' if language == 'zh' else 'en'}-{family}"]
    return TEMPLATES[DEFAULT_TEMPLATE.get(language, "en-1")]
