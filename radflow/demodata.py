"""Synthetic radiology reports and HL7 feeds for the demo, the bootstrap model and the tests.

No real patient data: every name, identifier and report is made up here. Each institution has
its own style (section titles, phrasing, numbering, boilerplate, character set and OBX layout),
as real RIS exports differ (the paper's "inconsistencies between institutions").
"""

from __future__ import annotations

import json
import random
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path

from ingest.clean import clean_text
from ingest.hl7 import escape, segment

# (findings sentence, impression phrase); {s} is a side, {n} a size in mm.
_ZH: dict[str, dict[str, list]] = {
    "chest": {
        "exam": [("CT0101", "胸部CT平扫"), ("CT0102", "胸部CT增强")],
        "abnormal": [
            ("{s}肺上叶见磨玻璃结节影，大小约{n}mm，边界清楚。", "{s}肺上叶磨玻璃结节，建议随访复查"),
            ("{s}肺下叶见斑片状高密度影，边缘模糊。", "{s}肺下叶炎症"),
            ("{s}侧胸腔见弧形液体密度影。", "{s}侧胸腔积液"),
            ("{s}肺中野见条索状影。", "{s}肺纤维灶"),
            ("纵隔内见肿大淋巴结，短径约{n}mm。", "纵隔淋巴结肿大"),
            ("{s}肺门区见软组织肿块，大小约{n}mm，边缘分叶。", "{s}肺门占位，考虑肺癌可能"),
        ],
        "normal": ["双肺纹理清晰，走行自然。", "气管及主支气管通畅。", "纵隔内未见肿大淋巴结。", "心影大小形态未见异常。"],
        "normal_impression": "胸部CT平扫未见明显异常",
    },
    "abdomen": {
        "exam": [("CT0201", "上腹部CT增强"), ("MR0202", "肝脏MRI平扫")],
        "abnormal": [
            ("肝{s}叶见类圆形低密度影，大小约{n}mm，增强后未见强化。", "肝{s}叶囊肿"),
            ("胆囊内见结节状高密度影，大小约{n}mm。", "胆囊结石"),
            ("肝实质密度弥漫性减低。", "脂肪肝"),
            ("{s}肾见类圆形低密度影，大小约{n}mm。", "{s}肾囊肿"),
            ("胰腺体积增大，周围脂肪间隙模糊。", "急性胰腺炎"),
            ("肝{s}叶见稍低密度肿块，大小约{n}mm，动脉期明显强化。", "肝{s}叶占位，考虑肝癌可能"),
        ],
        "normal": ["肝脏大小形态正常，实质密度均匀。", "胆囊不大，壁不厚。", "胰腺及脾脏未见异常。", "双肾形态位置正常。"],
        "normal_impression": "上腹部未见明显异常",
    },
    "musculoskeletal": {
        "exam": [("MR0301", "腰椎MRI平扫"), ("MR0302", "膝关节MRI平扫")],
        "abnormal": [
            ("L4/5椎间盘向{s}后方突出，硬膜囊受压。", "L4/5椎间盘突出"),
            ("L5/S1椎间盘向后膨出。", "L5/S1椎间盘膨出"),
            ("腰椎椎体边缘骨质增生。", "腰椎退行性变"),
            ("{s}膝关节内侧半月板后角见线样高信号，达关节面。", "{s}膝内侧半月板撕裂"),
            ("{s}膝关节腔内见少量液体信号。", "{s}膝关节积液"),
            ("{s}膝前交叉韧带连续性中断。", "{s}膝前交叉韧带断裂"),
        ],
        "normal": ["腰椎生理曲度存在。", "椎体信号未见异常。", "关节间隙未见狭窄。", "周围软组织未见异常。"],
        "normal_impression": "未见明显异常",
    },
    "head": {
        "exam": [("CT0401", "颅脑CT平扫"), ("MR0402", "颅脑MRI平扫")],
        "abnormal": [
            ("{s}侧基底节区见斑点状低密度影，大小约{n}mm。", "{s}侧基底节区腔隙性脑梗死"),
            ("双侧侧脑室旁白质见斑片状低密度影。", "脑白质脱髓鞘改变"),
            ("{s}侧额叶见片状高密度影，周围见水肿带。", "{s}侧额叶脑出血"),
            ("脑沟脑裂增宽加深。", "脑萎缩"),
            ("{s}侧颞部颅板下见新月形高密度影。", "{s}侧硬膜下血肿"),
            ("{s}侧小脑半球见类圆形肿块，大小约{n}mm。", "{s}侧小脑占位"),
        ],
        "normal": ["脑实质密度未见异常。", "脑室系统未见扩大。", "中线结构居中。", "颅骨未见骨折。"],
        "normal_impression": "颅脑CT平扫未见明显异常",
    },
    "maxillofacial_neck": {
        "exam": [("CT0501", "颈部CT增强"), ("CT0502", "鼻窦CT平扫")],
        "abnormal": [
            ("甲状腺{s}叶见低密度结节，大小约{n}mm。", "甲状腺{s}叶结节"),
            ("{s}侧上颌窦黏膜增厚。", "{s}侧上颌窦炎"),
            ("{s}侧颈部见多发肿大淋巴结，最大短径约{n}mm。", "{s}侧颈部淋巴结肿大"),
            ("鼻中隔向{s}侧偏曲。", "鼻中隔偏曲"),
            ("{s}侧腮腺内见类圆形结节，大小约{n}mm。", "{s}侧腮腺结节，多形性腺瘤可能"),
            ("双侧筛窦见软组织密度影。", "筛窦炎"),
        ],
        "normal": ["甲状腺大小形态正常。", "咽腔未见狭窄。", "双侧颈部未见肿大淋巴结。", "各鼻窦窦腔透亮。"],
        "normal_impression": "颈部未见明显异常",
    },
}

_EN: dict[str, dict[str, list]] = {
    "chest": {
        "exam": [("CTCH", "CT CHEST WITHOUT CONTRAST"), ("CTCHC", "CT CHEST WITH CONTRAST")],
        "abnormal": [
            ("There is a {n} mm ground-glass nodule in the {s} upper lobe.", "{s} upper lobe ground-glass nodule, follow-up recommended"),
            ("Patchy consolidation is seen in the {s} lower lobe.", "{s} lower lobe pneumonia"),
            ("There is a small {s} pleural effusion.", "Small {s} pleural effusion"),
            ("Linear opacity in the {s} midlung zone.", "{s} linear scarring"),
            ("Enlarged mediastinal lymph nodes measure up to {n} mm.", "Mediastinal lymphadenopathy"),
            ("A lobulated {n} mm mass is present in the {s} hilum.", "{s} hilar mass, concerning for malignancy"),
        ],
        "normal": ["The lungs are clear.", "The airways are patent.", "No mediastinal lymphadenopathy.", "Heart size is normal."],
        "normal_impression": "No acute cardiopulmonary abnormality",
    },
    "abdomen": {
        "exam": [("CTAP", "CT ABDOMEN PELVIS WITH CONTRAST"), ("MRLIV", "MRI LIVER")],
        "abnormal": [
            ("A {n} mm nonenhancing hypodense lesion in the {s} hepatic lobe.", "{s} hepatic lobe cyst"),
            ("A {n} mm calcified stone in the gallbladder.", "Cholelithiasis"),
            ("Diffuse decreased attenuation of the liver.", "Hepatic steatosis"),
            ("A {n} mm simple cyst in the {s} kidney.", "{s} renal cyst"),
            ("The pancreas is enlarged with peripancreatic fat stranding.", "Acute pancreatitis"),
            ("An arterially enhancing {n} mm mass in the {s} hepatic lobe.", "{s} hepatic mass, suspicious for hepatocellular carcinoma"),
        ],
        "normal": ["The liver is normal in size.", "The gallbladder is unremarkable.", "The pancreas and spleen are normal.", "The kidneys are normal."],
        "normal_impression": "No acute abdominal abnormality",
    },
    "musculoskeletal": {
        "exam": [("MRLS", "MRI LUMBAR SPINE"), ("MRKN", "MRI KNEE")],
        "abnormal": [
            ("At L4-5 there is a {s} paracentral disc protrusion compressing the thecal sac.", "L4-5 disc protrusion"),
            ("At L5-S1 there is a diffuse disc bulge.", "L5-S1 disc bulge"),
            ("Marginal osteophytes of the lumbar vertebrae.", "Lumbar spondylosis"),
            ("Linear signal reaching the articular surface of the {s} medial meniscus posterior horn.", "{s} medial meniscus tear"),
            ("Small joint effusion in the {s} knee.", "{s} knee effusion"),
            ("Discontinuity of the {s} anterior cruciate ligament.", "{s} anterior cruciate ligament tear"),
        ],
        "normal": ["Normal lumbar lordosis.", "Vertebral body signal is normal.", "Joint spaces are preserved.", "Soft tissues are unremarkable."],
        "normal_impression": "No significant abnormality",
    },
    "head": {
        "exam": [("CTHD", "CT HEAD WITHOUT CONTRAST"), ("MRBR", "MRI BRAIN")],
        "abnormal": [
            ("A {n} mm hypodensity in the {s} basal ganglia.", "{s} basal ganglia lacunar infarct"),
            ("Patchy periventricular white matter hypodensities.", "Chronic small vessel ischemic change"),
            ("Hyperdense hemorrhage in the {s} frontal lobe with surrounding edema.", "{s} frontal intraparenchymal hemorrhage"),
            ("Prominent sulci and ventricles.", "Cerebral atrophy"),
            ("Crescentic hyperdense collection along the {s} convexity.", "{s} subdural hematoma"),
            ("A {n} mm mass in the {s} cerebellar hemisphere.", "{s} cerebellar mass"),
        ],
        "normal": ["No intracranial hemorrhage.", "The ventricles are normal in size.", "No midline shift.", "The calvarium is intact."],
        "normal_impression": "No acute intracranial abnormality",
    },
    "maxillofacial_neck": {
        "exam": [("CTNK", "CT NECK WITH CONTRAST"), ("CTSN", "CT SINUS")],
        "abnormal": [
            ("A {n} mm hypodense nodule in the {s} thyroid lobe.", "{s} thyroid nodule"),
            ("Mucosal thickening of the {s} maxillary sinus.", "{s} maxillary sinusitis"),
            ("Multiple enlarged {s} cervical lymph nodes up to {n} mm.", "{s} cervical lymphadenopathy"),
            ("The nasal septum deviates to the {s}.", "Nasal septal deviation"),
            ("A {n} mm well-circumscribed nodule in the {s} parotid gland.", "{s} parotid nodule, possibly pleomorphic adenoma"),
            ("Opacification of the ethmoid air cells.", "Ethmoid sinusitis"),
        ],
        "normal": ["The thyroid is normal.", "The airway is patent.", "No cervical lymphadenopathy.", "The paranasal sinuses are clear."],
        "normal_impression": "No acute abnormality of the neck",
    },
}

BODY_SYSTEMS = tuple(_ZH)


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
        lib = _ZH if style.language == "zh" else _EN
        for system in BODY_SYSTEMS:
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


def to_hl7(report: DemoReport, status: str, control_id: str, when: datetime) -> bytes:
    """An ORU^R01 for one report: status P carries findings only, F adds impression and signer."""
    style = next(s for s in INSTITUTIONS if s.code == report.institution)
    ts = when.strftime("%Y%m%d%H%M%S")
    msh = {3: "RIS", 4: style.code, 5: "RADFLOW", 6: "RADFLOW", 7: ts, 9: "ORU^R01^ORU_R01", 10: control_id,
           11: "P", 12: "2.5.1"}
    if style.enhanced_ack:
        msh.update({15: "AL", 16: "NE"})
    if style.charset:
        msh[18] = style.charset
    segs = [segment("MSH", msh)]
    segs.append(segment("PID", {1: "1", 3: f"SYN{zlib.crc32(report.accession.encode()) % 10**7:07d}^^^{style.code}^MR",
                                5: "DEMO^PATIENT"}))
    obr = {1: "1", 2: f"PL{report.accession}", 3: report.accession, 4: f"{report.exam_code}^{escape(report.exam)}^L",
           7: ts, 24: report.modality, 25: status}
    if status != "P":
        obr[32] = report.signer
    segs.append(segment("OBR", obr))
    obx = []
    if style.layout == "narrative":
        lines = report.findings_raw.replace(style.findings_title, style.findings_title + "\n").split("\n")
        if status != "P":
            lines += [""] + report.impression_raw.replace(style.impression_title, style.impression_title + "\n").split("\n")
        for line in lines:
            obx.append((style.findings_id, line))
    else:
        obx.append((style.findings_id, report.findings_raw))
        if status != "P":
            obx.append((style.impression_id, report.impression_raw))
    for n, (ident, value) in enumerate(obx, start=1):
        segs.append(segment("OBX", {1: str(n), 2: "TX", 3: ident, 5: escape(value), 11: status}))
    return ("\r".join(segs) + "\r").encode(style.codec)


@dataclass(frozen=True)
class FeedItem:
    report: DemoReport
    status: str
    message: bytes


def expected_ack(report: DemoReport) -> str:
    """The acknowledgement code a stored message of this report's institution gets."""
    style = next(s for s in INSTITUTIONS if s.code == report.institution)
    return "CA" if style.enhanced_ack else "AA"


def feed(reports: list[DemoReport], seed: int = 7, max_lag: int = 12, control_prefix: str = "") -> Iterator[FeedItem]:
    """Preliminary results first, each signed result some messages later (sometimes before the
    draft is ready, so the scorer sees both orders)."""
    rng = random.Random(seed)
    start = datetime(2026, 1, 5, 8, 0, 0)
    events: list[tuple[float, int, DemoReport, str]] = []
    for pos, report in enumerate(reports):
        events.append((pos, 0, report, "P"))
        events.append((pos + rng.uniform(0.5, max_lag), 1, report, "F"))
    events.sort(key=lambda e: (e[0], e[1]))
    for n, (t, _, report, status) in enumerate(events):
        when = start + timedelta(minutes=t)
        yield FeedItem(report, status, to_hl7(report, status, f"{control_prefix}{report.institution}{n:07d}", when))


def write_pairs(reports: list[DemoReport], path: Path) -> Path:
    """Findings → impression pairs, one JSON object a line (the format training and eval read)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for r in reports:
            row = asdict(r)
            row["id"] = f"{r.institution}-{r.accession}"
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path
