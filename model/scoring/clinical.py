"""Finding-level proxies for the paper's two most important clinical criteria.

Missed diagnosis: a finding present in the signed impression, absent or negated in the draft.
Overdiagnosis: a finding present in the draft, absent or negated in the signed impression.
Findings come from a small bilingual lexicon of radiology concepts. Negation and uncertainty are
read from cue words within the same clause, NegEx-style. Uncertain findings ("考虑…可能",
"suspicious for") count as present: a hedged finding still directs care. This is a proxy, not
a labeller (SRRG's 55-label classifier is the heavier alternative).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

# concept -> (Chinese terms, English terms). Longer terms first within a concept.
LEXICON: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "ground_glass": (("磨玻璃",), ("ground-glass", "ground glass")),
    "nodule": (("结节",), ("nodule", "nodular")),
    "mass": (("占位", "肿块", "肿物"), ("mass", "neoplasm", "tumor", "tumour")),
    "malignancy": (("肺癌", "肝癌", "恶性", "癌"), ("malignancy", "carcinoma", "cancer", "metasta")),
    "pneumonia": (("肺炎", "炎症", "感染"), ("pneumonia", "infection", "infectious")),
    "consolidation": (("实变",), ("consolidation", "airspace disease")),
    "effusion": (("积液",), ("effusion",)),
    "pneumothorax": (("气胸",), ("pneumothorax",)),
    "atelectasis": (("肺不张",), ("atelectasis",)),
    "emphysema": (("肺气肿",), ("emphysema",)),
    "fibrosis": (("纤维灶", "纤维化", "索条"), ("fibrosis", "scarring", "scar")),
    "lymphadenopathy": (("淋巴结肿大",), ("lymphadenopathy", "enlarged lymph node")),
    "cardiomegaly": (("心影增大", "心脏增大"), ("cardiomegaly", "enlarged heart")),
    "edema": (("水肿",), ("edema", "oedema")),
    "cyst": (("囊肿",), ("cyst",)),
    "stone": (("结石",), ("stone", "cholelithiasis", "nephrolithiasis", "calculus")),
    "steatosis": (("脂肪肝",), ("steatosis", "fatty liver")),
    "pancreatitis": (("胰腺炎",), ("pancreatitis",)),
    "disc_herniation": (("椎间盘突出",), ("disc protrusion", "disc herniation", "herniated disc")),
    "disc_bulge": (("膨出",), ("disc bulge",)),
    "degeneration": (("退行性变", "退变"), ("spondylosis", "degenerative")),
    "tear": (("撕裂", "断裂"), ("tear",)),
    "infarct": (("梗死", "梗塞"), ("infarct",)),
    "hemorrhage": (("出血",), ("hemorrhage", "haemorrhage", "bleed")),
    "hematoma": (("血肿",), ("hematoma", "haematoma")),
    "atrophy": (("萎缩",), ("atrophy",)),
    "white_matter": (("脱髓鞘",), ("small vessel ischemic", "white matter disease")),
    "sinusitis": (("窦炎",), ("sinusitis",)),
    "septal_deviation": (("鼻中隔偏曲",), ("septal deviation",)),
    "adenoma": (("腺瘤",), ("adenoma",)),
    "fracture": (("骨折",), ("fracture",)),
}

NEGATION_ZH = ("未见", "未发现", "未显示", "没有", "无明显", "无", "排除", "否认", "不伴")
NEGATION_EN = ("no evidence of", "negative for", "free of", "without", "no", "not", "absent")
UNCERTAIN_ZH = ("可能", "考虑", "疑似", "可疑", "待排", "不除外", "不能除外", "倾向")
UNCERTAIN_EN = ("possible", "possibly", "probable", "likely", "suspicious for", "concerning for",
                "cannot be excluded", "may represent", "questionable", "suggestive of")
# "未见明显变化", "no change": phrases with a negation cue that deny no finding
PSEUDO = ("未见明显变化", "no change", "not significantly changed", "no interval change")

_CLAUSE = re.compile(r"[^，,。；;.!?！？\n]+")
PRESENT, ABSENT, UNCERTAIN = "present", "absent", "uncertain"


@dataclass(frozen=True)
class FindingDiff:
    missed: tuple[str, ...]
    over: tuple[str, ...]


def _terms(language: str) -> list[tuple[str, str]]:
    index = 0 if language == "zh" else 1
    pairs = [(term, concept) for concept, terms in LEXICON.items() for term in terms[index]]
    return sorted(pairs, key=lambda p: -len(p[0]))


_TERMS = {"zh": _terms("zh"), "en": _terms("en")}
# compiled once: ~200 terms would thrash re's own pattern cache
_PATTERNS = {
    "zh": [(re.compile(re.escape(term)), concept) for term, concept in _TERMS["zh"]],
    "en": [(re.compile(rf"\b{re.escape(term)}"), concept) for term, concept in _TERMS["en"]],
}


def extract(text: str, language: str) -> dict[str, str]:
    """concept -> present / absent / uncertain; a concept asserted anywhere wins over a negation."""
    found: dict[str, str] = {}
    rank = {ABSENT: 0, UNCERTAIN: 1, PRESENT: 2}
    lowered = text.lower() if language == "en" else text
    for clause in _CLAUSE.findall(lowered):
        for concept, polarity in _clause_findings(clause, "zh" if language == "zh" else "en"):
            if rank[polarity] > rank.get(found.get(concept, ""), -1):
                found[concept] = polarity
    return found


@lru_cache(maxsize=200_000)
def _clause_findings(clause: str, language: str) -> tuple[tuple[str, str], ...]:
    """(concept, polarity) in the order found. Clauses recur across reports, so this is cached."""
    for pseudo in PSEUDO:
        clause = clause.replace(pseudo, " ")
    out = []
    seen_spans: list[tuple[int, int]] = []
    for pattern, concept in _PATTERNS[language]:
        for match in pattern.finditer(clause):
            span = match.span()
            if any(s <= span[0] < e for s, e in seen_spans):  # "肺癌" already read, skip "癌"
                continue
            seen_spans.append(span)
            out.append((concept, _polarity(clause, span[0], language)))
    return tuple(out)


def _polarity(clause: str, start: int, language: str) -> str:
    before = clause[:start]
    if language == "zh":
        negated = any(cue in before for cue in NEGATION_ZH)
        uncertain = any(cue in clause for cue in UNCERTAIN_ZH)
    else:
        words = before.split()[-6:]  # NegEx's window of a few words before the finding
        window = " ".join(words)
        negated = any(re.search(rf"\b{cue}\b", window) for cue in NEGATION_EN)
        uncertain = any(cue in clause for cue in UNCERTAIN_EN)
    if negated:
        return ABSENT
    return UNCERTAIN if uncertain else PRESENT


def compare(draft: str, signed: str, language: str) -> FindingDiff:
    d, s = extract(draft, language), extract(signed, language)
    asserted = {PRESENT, UNCERTAIN}
    missed = sorted(c for c, p in s.items() if p in asserted and d.get(c) not in asserted)
    over = sorted(c for c, p in d.items() if p in asserted and s.get(c) not in asserted)
    return FindingDiff(tuple(missed), tuple(over))
