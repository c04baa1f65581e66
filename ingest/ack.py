"""HL7 acknowledgements, as Mirth's auto-responder writes them.

AA: the message is durably stored (or deliberately ignored); AE: a processing error, the sender
may retry; AR: rejected (unsupported type or version), retrying will not help. MSA-2 echoes
MSH-10 and the ACK is encoded in the sender's character set.
"""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime

from ingest.hl7 import Encoding, HL7Message, escape
from kernel.codes import AckCode

ACCEPT, ERROR, REJECT = AckCode.ACCEPT, AckCode.ERROR, AckCode.REJECT
_counter = itertools.count(1)


def _control_id() -> str:
    return f"RF{int(time.time() * 1000)}{next(_counter) % 10000:04d}"


def build_ack(
    msg: HL7Message | None,
    code: str,
    error_code: str = "",
    error_text: str = "",
) -> bytes:
    """The ACK for ``msg`` (None when the input could not be read at all)."""
    enc = msg.encoding if msg else Encoding()
    fs, cs = enc.field, enc.component
    now = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    enc_chars = enc.component + enc.repetition + enc.escape + enc.subcomponent
    if msg is not None:
        f, msh = msg.field, msg.msh
        trigger = f(msh, 9, 2)
        # Sender and receiver swap places; MSH-1 is implied by the separator itself.
        header = [
            "MSH", enc_chars, f(msh, 5), f(msh, 6), f(msh, 3), f(msh, 4), now, "",
            f"ACK{cs}{trigger}{cs}ACK" if trigger else "ACK", _control_id(), f(msh, 11) or "P",
            f(msh, 12) or "2.5", "", "", "", "", "", msg.charset,
        ]
        control = f(msh, 10)
        codec = msg.codec
    else:
        header = ["MSH", enc_chars, "RADFLOW", "RADFLOW", "", "", now, "", "ACK", _control_id(), "P", "2.5"]
        control, codec = "", "utf-8"
    segments = [fs.join(header).rstrip(fs)]
    segments.append(fs.join(["MSA", code, control]))
    if code != ACCEPT:
        text = escape(error_text[:200], enc)
        # ERR-3 (v2.5): HL7 table 0357 code; ERR-4: severity E; ERR-8: a user message.
        segments.append(fs.join(["ERR", "", "", f"{error_code or '207'}{cs}{text}{cs}HL70357", "E", "", "", "", text]))
    return ("\r".join(segments) + "\r").encode(codec, "replace")
