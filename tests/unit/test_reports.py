import pytest

from ingest.clean import clean_text
from ingest.hl7 import parse
from ingest.reports import body_system_of, classify, to_report_event
from kernel.errors import HL7ParseError, UnsupportedMessage
from tests import samples


def test_maps_oru_with_loinc_obx_and_cleans() -> None:
    event = to_report_event(parse(samples.ORU_ZH_UTF8))
    assert (event.institution, event.accession, event.status) == ("XIHE", "ACC0001", "F")
    assert event.body_system == "chest" and event.modality == "CT" and event.language == "zh"
    # section title, the repeated sentence, numbering and boilerplate are gone
    assert event.findings == "右肺上叶见磨玻璃结节影，大小约8mm。"
    assert event.impression == "右肺上叶磨玻璃结节，建议随访复查。"
    # the original is kept
    assert "【检查所见】" in event.findings_raw and "以上意见仅供临床参考" in event.impression_raw
    assert event.signer == "RAD001"
    assert event.signed


def test_maps_narrative_with_headings() -> None:
    event = to_report_event(parse(samples.ORU_EN_NARRATIVE))
    assert event.findings == "Small joint effusion in the left knee. The menisci are intact & normal."
    assert event.impression == "Left knee effusion."
    assert event.body_system == "musculoskeletal" and event.language == "en"


def test_preliminary_has_no_impression() -> None:
    event = to_report_event(parse(samples.ORU_ZH_GB18030))
    assert event.status == "P" and not event.signed and event.impression == ""
    assert event.body_system == "head"


def test_no_patient_identifiers_in_event() -> None:
    body = to_report_event(parse(samples.ORU_ZH_UTF8)).to_json().decode()
    assert "SYN0000001" not in body and "PATIENT" not in body


def test_classify() -> None:
    assert classify(parse(samples.ORU_ZH_UTF8)) == "result"
    assert classify(parse(samples.ADT_A01)) == "ignored"
    with pytest.raises(UnsupportedMessage):
        classify(parse(samples.DFT_UNKNOWN))
    with pytest.raises(UnsupportedMessage):
        classify(parse(b"MSH|^~\\&|A|B|C|D|1||ORU^R01|1|P|3.0\r"))


def test_missing_accession_is_a_parse_error() -> None:
    with pytest.raises(HL7ParseError, match="accession"):
        to_report_event(parse(b"MSH|^~\\&|A|B|C|D|1||ORU^R01|1|P|2.5\rOBR|1\r"))


@pytest.mark.parametrize(
    ("exam", "system"),
    [("胸部CT平扫", "chest"), ("颈椎MRI", "musculoskeletal"), ("颈部CT增强", "maxillofacial_neck"),
     ("颅脑CT平扫", "head"), ("上腹部CT增强", "abdomen"), ("CT SINUS", "maxillofacial_neck"),
     ("MRI LUMBAR SPINE", "musculoskeletal"), ("XR FOOT", "other")],
)
def test_body_system_map(exam: str, system: str) -> None:
    assert body_system_of(exam) == system


def test_clean_text_english_boilerplate_and_titles() -> None:
    assert clean_text("IMPRESSION: 1. Small effusion.\n2. Small effusion.\nPlease correlate clinically.") == "Small effusion."


def test_over_long_fields_are_rejected() -> None:
    from ingest.hl7 import segment
    from ingest.reports import MAX_ID, MAX_TEXT

    def message(accession: str, findings: str) -> bytes:
        return "\r".join([segment("MSH", {3: "R", 4: "X", 9: "ORU^R01", 10: "1", 12: "2.5"}),
                          segment("OBR", {3: accession, 25: "F"}),
                          segment("OBX", {1: "1", 2: "TX", 3: "18782-3", 5: findings})]).encode()

    with pytest.raises(HL7ParseError, match="longer than"):
        to_report_event(parse(message("A" * (MAX_ID + 1), "x")))
    with pytest.raises(HL7ParseError, match="longer than"):
        to_report_event(parse(message("A1", "x" * (MAX_TEXT + 1))))
    assert to_report_event(parse(message("A1", "x" * 1000))).accession == "A1"
