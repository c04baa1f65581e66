from hl7apy.parser import parse_message

from ingest.ack import ACCEPT, ERROR, REJECT, build_ack
from ingest.hl7 import parse
from tests import samples


def _reference(ack: bytes, codec: str = "utf-8"):
    """hl7apy (the validating reference) must read every ACK radflow sends."""
    return parse_message(ack.decode(codec), find_groups=False)


def test_aa_echoes_control_id_and_swaps_sender() -> None:
    ack = build_ack(parse(samples.ORU_ZH_UTF8), ACCEPT)
    ref = _reference(ack)
    assert ref.msa.msa_1.value == "AA" and ref.msa.msa_2.value == "MSG0001"
    assert ref.msh.msh_3.value == "RADFLOW" and ref.msh.msh_5.value == "RIS"
    assert ref.msh.msh_9.to_er7() == "ACK^R01^ACK"
    assert b"ERR" not in ack


def test_ae_and_ar_carry_err_segment() -> None:
    msg = parse(samples.ORU_ZH_UTF8)
    for code in (ERROR, REJECT):
        ack = build_ack(msg, code, "207", "broker down | retry")
        ref = _reference(ack)
        assert ref.msa.msa_1.value == code
        err = [s for s in ack.split(b"\r") if s.startswith(b"ERR")][0]
        assert b"207^broker down \\F\\ retry^HL70357" in err


def test_ack_goes_back_in_senders_charset() -> None:
    msg = parse(samples.ORU_ZH_GB18030)
    ack = build_ack(msg, ERROR, "207", "无法处理")
    assert "无法处理".encode("gb18030") in ack
    assert _reference(ack, "gb18030").msh.msh_18.value == "GB 18030-2000"


def test_ack_for_unreadable_input() -> None:
    ack = build_ack(None, ERROR, "100", "no MSH segment")
    assert _reference(ack).msa.msa_1.value == "AE"
