"""Synthetic institutions, each with its own reporting style, and their reports."""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from ingest.clean import clean_text
from kernel.codes import CLASSIFIED_BODY_SYSTEMS
from radflow.demodata.vocabulary import EN_SENTENCES, ZH_SENTENCES


@dataclass(frozen=True)
class Style:
    """How one institution writes and sends its reports."""

    code: str
    name: str
    language: str
    charset: str  # MSH-18
    codec: str
    findings_title: str
    impression_title: str
    boilerplate: str
    numbered: bool
    layout: str  # "obx-per-section" or "narrative" (headings inside one OBX sequence)
    findings_id: str
    impression_id: str
    replacements: tuple[tuple[str, str], ...] = ()
    enhanced_ack: bool = False  # MSH-15/16 = AL/NE: the sender wants commit acknowledgements (CA)
    impression_replacements: tuple[tuple[str, str], ...] = ()  # phrasing of this institution's impressions only


INSTITUTIONS: tuple[Style, ...] = (
    Style("XIHE", "Xihe People's Hospital (demo)", "zh", "UNICODE UTF-8", "utf-8", "【检查所见】", "【诊断意见】",
          "以上意见仅供临床参考。", True, "obx-per-section", "18782-3^影像所见^LN", "19005-8^诊断意见^LN"),
    Style("NANHU", "Nanhu Central Hospital (demo)", "zh", "GB 18030-2000", "gb18030", "影像所见：", "诊断：",
          "请结合临床。", False, "obx-per-section", "YXSJ^影像所见^L", "ZDYJ^诊断意见^L",
          (("双肺", "两肺"), ("未见明显异常", "未见异常"), ("，建议随访复查", "，请随访")), enhanced_ack=True),
    Style("LAKEVIEW", "Lakeview General (demo)", "en", "", "ascii", "FINDINGS:", "IMPRESSION:",
          "Please correlate clinically.", True, "narrative", "GDT^Report^L", "GDT^Report^L"),
)


@dataclass(frozen=True)
class DemoReport:
    institution: str
    accession: str
    body_system: str
    language: str
    modality: str
    exam_code: str
    exam: str
    findings_raw: str
    impression_raw: str
    signer: str
    findings: str
    impression: str


def generate_reports(
    per_segment: int, seed: int = 7, start: int = 0, institutions: tuple[Style, ...] = INSTITUTIONS
) -> list[DemoReport]:
    """``per_segment`` reports for every institution × body system, reproducible by seed."""
    rng = random.Random(seed)
    reports = []
    for style in institutions:
        lib = ZH_SENTENCES if style.language == "zh" else EN_SENTENCES
        for system in CLASSIFIED_BODY_SYSTEMS:
            for i in range(start, start + per_segment):
                reports.append(_report(rng, style, system, lib[system], i))
    return reports


def _report(rng: random.Random, style: Style, system: str, lib: dict, i: int) -> DemoReport:
    zh = style.language == "zh"
    code, exam = rng.choice(lib["exam"])
    k = rng.choice((0, 1, 1, 2, 2, 3))
    chosen = rng.sample(lib["abnormal"], k)
    sides = ("左", "右") if zh else ("left", "right")
    finding_sentences, impressions = [], []
    for f_tmpl, i_tmpl in chosen:
        side, size = rng.choice(sides), rng.randrange(3, 40)
        finding_sentences.append(f_tmpl.format(s=side, n=size))
        imp = i_tmpl.format(s=side, n=size)
        impressions.append(imp[0].upper() + imp[1:] if not zh else imp)
    normals = rng.sample(lib["normal"], rng.randint(2, 3))
    findings = finding_sentences + normals
    if not impressions:
        impressions = [lib["normal_impression"]]
    end = "。" if zh else "."
    if style.numbered and len(impressions) > 1:
        impression = "\n".join(f"{j + 1}. {imp}{end}" for j, imp in enumerate(impressions))
    else:
        impression = ("；" if zh else "; ").join(impressions) + end
    joiner = "" if zh else " "
    findings_text = joiner.join(findings)
    for old, new in style.replacements:
        findings_text, impression = findings_text.replace(old, new), impression.replace(old, new)
    for old, new in style.impression_replacements:
        impression = impression.replace(old, new)
    findings_raw = f"{style.findings_title}{findings_text}"
    impression_raw = f"{style.impression_title}{impression}\n{style.boilerplate}"
    accession = f"{style.code[:2]}{system[:2].upper()}{i:05d}"
    modality = code[:2] if code[:2] in ("CT", "MR") else ("MR" if exam.startswith("MRI") else "CT")
    return DemoReport(
        institution=style.code,
        accession=accession,
        body_system=system,
        language=style.language,
        modality=modality,
        exam_code=code,
        exam=exam,
        findings_raw=findings_raw,
        impression_raw=impression_raw,
        signer=f"RAD{rng.randrange(1, 20):03d}^Demo^Radiologist",
        findings=clean_text(findings_raw),
        impression=clean_text(impression_raw),
    )


def write_pairs(reports: list[DemoReport], path: Path) -> Path:
    """Findings → impression pairs, one JSON object a line (the format training and eval read)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for r in reports:
            row = asdict(r)
            row["id"] = f"{r.institution}-{r.accession}"
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path
