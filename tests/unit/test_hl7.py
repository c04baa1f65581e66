import pytest

from ingest.hl7 import Encoding, escape, parse, unescape
from kernel.errors import HL7ParseError
from tests import samples


def test_reads_utf8_message_fields() -> None:
    msg = parse(samples.ORU_ZH_UTF8)
    assert msg.charset == "UNICODE UTF-8"
    assert msg.message_type == ("ORU", "R01")
    assert msg.control_id == "MSG0001"
    assert msg.version == "2.5.1"
    obr = msg.segment("OBR")
    assert msg.text(obr, 4, 2) == "胸部CT平扫"
    assert msg.field(obr, 25) == "F"


def test_decodes_by_msh18_gb18030() -> None:
    msg = parse(samples.ORU_ZH_GB18030)
    assert msg.codec == "gb18030"
    assert "左侧基底节区" in msg.text(msg.segment("OBX"), 5)


@pytest.mark.parametrize("ending", [b"\r", b"\n", b"\r\n"])
def test_normalises_segment_endings(ending: bytes) -> None:
    msg = parse(samples.ORU_EN_NARRATIVE.replace(b"\r", ending))
    assert [s[0] for s in msg.segments] == ["MSH", "OBR", "OBX", "OBX", "OBX", "OBX"]


def test_tolerates_utf8_bom() -> None:
    assert parse(b"\xef\xbb\xbf" + samples.ORU_ZH_UTF8).control_id == "MSG0001"


def test_unescapes_hl7_sequences() -> None:
    enc = Encoding()
    assert unescape(r"a\F\b\S\c\T\d\R\e\E\f\.br\g", enc) == "a|b^c&d~e\\f\ng"
    assert unescape("\\X41\\\\X42\\", enc) == "AB"
    assert unescape("\\H\\bold\\N\\", enc) == "bold"


def test_escape_round_trips() -> None:
    text = "a|b^c&d~e\\f\ng 右肺"
    assert unescape(escape(text)) == text


def test_rejects_what_is_not_hl7() -> None:
    with pytest.raises(HL7ParseError):
        parse(samples.NOT_HL7)
    with pytest.raises(HL7ParseError):
        parse(b"MSH")
    with pytest.raises(HL7ParseError, match="character set"):
        parse(b"MSH|^~\\&|A|B|C|D|1||ORU^R01|1|P|2.5||||||KLINGON\r")


def test_declared_ascii_with_latin1_bytes_still_reads() -> None:
    msg = parse(b"MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.5\rPID|1||X||M\xfcller\r")
    assert msg.text(msg.segment("PID"), 5) == "Müller"


def test_segment_builder_puts_fields_at_their_numbers() -> None:
    from ingest.hl7 import segment

    msg = parse((segment("MSH", {3: "A", 9: "ORU^R01", 10: "1", 12: "2.5", 18: "UNICODE UTF-8"}) + "\r"
                 + segment("OBR", {3: "ACC", 25: "F", 32: "RAD1"}) + "\r").encode())
    obr = msg.segment("OBR")
    assert (msg.charset, msg.field(obr, 3), msg.field(obr, 25), msg.field(obr, 32)) == ("UNICODE UTF-8", "ACC", "F", "RAD1")
