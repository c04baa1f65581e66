"""Cleaning of report text, after ChatRadio-Valuer's Algorithm 1.

Three kinds of noise are removed: section titles and repeated values, export-sheet
inconsistencies (whitespace, punctuation widths), and non-essential boilerplate terms.
The original text is kept beside the cleaned one in storage.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from kernel.codes import language_of  # noqa: F401  # re-exported: ingest.reports reads it here

#: Section titles as they open a block of text (Chinese and English exports).
SECTION_TITLE = re.compile(
    r"^\s*(?:【[^】]{1,12}】|\[[A-Za-z ]{1,20}\]|"
    r"(?:影像所见|检查所见|影像表现|所见|描述|诊断意见|影像诊断|诊断|印象|结论|意见)\s*[:：]|"
    r"(?:FINDINGS?|IMPRESSIONS?|CONCLUSIONS?|RESULTS?|REPORT|OPINION)\s*:)\s*",
    re.IGNORECASE,
)

#: Boilerplate with no diagnostic content, shared by every institution.
DEFAULT_BOILERPLATE: tuple[str, ...] = (
    "以上意见仅供临床参考",
    "仅供临床参考",
    "请结合临床",
    "建议结合临床",
    "报告仅供参考",
    "Please correlate clinically",
    "Clinical correlation is recommended",
    "This report was electronically signed",
)

_SENTENCE = re.compile(r"[^。；;！!？?\n]+[。；;！!？?]?|\n")
_LIST_MARK = re.compile(r"^\s*(?:\d{1,2}[.、)）]|[（(]\d{1,2}[)）]|[-*•])\s*")


def clean_text(text: str, boilerplate: Iterable[str] = DEFAULT_BOILERPLATE) -> str:
    """Cleaned text: titles and boilerplate removed, repeated sentences dropped, spaces normalised."""
    text = text.replace("\u3000", " ").replace("\r", "\n").replace("\t", " ")
    lines = []
    for line in text.split("\n"):
        line = SECTION_TITLE.sub("", line, count=1)
        line = _LIST_MARK.sub("", line)
        for phrase in boilerplate:
            line = re.sub(re.escape(phrase) + r"[。.，,!！]?", "", line, flags=re.IGNORECASE)
        line = re.sub(r" {2,}", " ", line).strip()
        if line:
            lines.append(line)
    zh = language_of(text) == "zh"
    seen: set[str] = set()
    sentences: list[str] = []
    for line in lines:
        for sentence in _SENTENCE.findall(line):
            sentence = sentence.strip()
            norm = re.sub(r"[\s。；;.,，]", "", sentence).lower()
            if not norm or norm in seen:
                continue
            seen.add(norm)
            sentences.append(_normalise_punctuation(sentence, zh))
    joiner = "" if zh else " "
    return joiner.join(sentences).strip()


def _normalise_punctuation(sentence: str, zh: bool) -> str:
    if zh:
        sentence = re.sub(r"(?<=[\u4e00-\u9fff]),", "，", sentence)
        sentence = re.sub(r"(?<=[\u4e00-\u9fff])\.$", "。", sentence)
        sentence = sentence.replace(";", "；")
        if not re.search(r"[。；！？]$", sentence):
            sentence += "。"
    else:
        if not re.search(r"[.;!?]$", sentence):
            sentence += "."
    return re.sub(r"([。，；.,;])\1+", r"\1", sentence)
