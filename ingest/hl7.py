"""A tolerant, fast HL7 v2 (ER7 pipe) reader.

hl7apy builds a full typed tree (~10 ms a message); the hot path needs only MSH, OBR and OBX
(~0.1 ms here), so this module reads segments itself and hl7apy serves as the validating
reference in tests. Decoding follows MSH-18; escapes follow HL7 v2.5 section 2.7.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kernel.errors import HL7ParseError

SEGMENT_END = "\r"

#: MSH-18 values mapped to Python codecs. GB2312 is a subset of GB 18030, so both decode as it.
CHARSETS = {
    "": "utf-8",
    "ASCII": "utf-8",  # senders often declare ASCII and send UTF-8; UTF-8 is a superset
    "8859/1": "latin-1",
    "ISO-8859-1": "latin-1",
    "UNICODE UTF-8": "utf-8",
    "UTF-8": "utf-8",
    "GB 18030-2000": "gb18030",
    "GB18030": "gb18030",
    "GB2312": "gb18030",
    "GB 2312": "gb18030",
    "CNS 11643-1992": "big5",
}

_BOM = b"\xef\xbb\xbf"
_MSH18 = 17  # index of MSH-18 after splitting on the field separator (MSH-1 is the separator)


@dataclass(frozen=True)
class Encoding:
    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"


@dataclass(frozen=True)
class HL7Message:
    """Segments as lists of raw (still escaped) fields; ``fields[0]`` is the segment name."""

    segments: tuple[tuple[str, ...], ...]
    encoding: Encoding
    charset: str  # the MSH-18 value as sent
    codec: str

    def segment(self, name: str) -> tuple[str, ...] | None:
        return next((s for s in self.segments if s[0] == name), None)

    def all(self, name: str) -> list[tuple[str, ...]]:
        return [s for s in self.segments if s[0] == name]

    def field(self, seg: tuple[str, ...] | None, index: int, component: int = 0) -> str:
        """Field ``index`` (1-based, as in the spec), first repetition, raw (escaped)."""
        if seg is None:
            return ""
        # parse() stores MSH-1 (the separator) as a field, so field n is at index n everywhere.
        if index >= len(seg) or index < 1:
            return ""
        value = seg[index] if seg[0] == "MSH" and index <= 2 else seg[index].split(self.encoding.repetition)[0]
        if component:
            parts = value.split(self.encoding.component)
            return parts[component - 1] if component - 1 < len(parts) else ""
        return value

    def text(self, seg: tuple[str, ...] | None, index: int, component: int = 0) -> str:
        """Field as text: escapes decoded."""
        return unescape(self.field(seg, index, component), self.encoding, self.codec)

    def repetitions(self, seg: tuple[str, ...], index: int) -> list[str]:
        pos = index
        if pos >= len(seg):
            return []
        return [unescape(r, self.encoding, self.codec) for r in seg[pos].split(self.encoding.repetition)]

    @property
    def msh(self) -> tuple[str, ...]:
        return self.segments[0]

    @property
    def control_id(self) -> str:
        return self.text(self.msh, 10)

    @property
    def message_type(self) -> tuple[str, str]:
        return self.field(self.msh, 9, 1), self.field(self.msh, 9, 2)

    @property
    def version(self) -> str:
        return self.field(self.msh, 12, 1)


def decode(raw: bytes) -> tuple[str, str, str]:
    """Bytes to text by MSH-18. Returns (text, MSH-18 as sent, codec)."""
    raw = raw.removeprefix(_BOM)
    start = raw.find(b"MSH")
    if start < 0:
        raise HL7ParseError("no MSH segment", code="100")
    charset = ""
    if len(raw) > start + 3:
        sep = raw[start + 3 : start + 4]
        first = re.split(rb"[\r\n]", raw[start:], maxsplit=1)[0]
        parts = first.split(sep)
        if len(parts) > _MSH18:
            charset = parts[_MSH18].split(b"^")[0].strip().decode("ascii", "replace")
    codec = CHARSETS.get(charset.upper())
    if codec is None:
        raise HL7ParseError(f"unsupported character set in MSH-18: {charset!r}", code="203")
    try:
        text = raw.decode(codec)
    except UnicodeDecodeError:
        if codec != "utf-8":
            raise HL7ParseError(f"bytes do not decode as MSH-18 {charset!r}", code="102") from None
        # Undeclared legacy bytes: latin-1 never fails, and the sender's text survives round trips.
        text, codec = raw.decode("latin-1"), "latin-1"
    return text, charset, codec


def parse(raw: bytes) -> HL7Message:
    """Parse one message. Raises :class:`HL7ParseError` for what is not HL7 v2 ER7."""
    text, charset, codec = decode(raw)
    text = text.replace("\r\n", SEGMENT_END).replace("\n", SEGMENT_END)
    start = text.find("MSH")
    if start < 0 or text[:start].strip("\r\x0b\x1c \t"):
        raise HL7ParseError("message does not start with an MSH segment", code="100")
    text = text[start:]
    if len(text) < 8:
        raise HL7ParseError("MSH segment is truncated", code="101")
    fs = text[3]
    enc_chars = text[4:8].split(fs)[0]
    if fs.isalnum() or fs in "\r " or len(enc_chars) < 2 or fs in enc_chars:
        raise HL7ParseError("MSH-1/MSH-2 do not define usable delimiters", code="102")
    enc = Encoding(
        field=fs,
        component=enc_chars[0],
        repetition=enc_chars[1],
        escape=enc_chars[2] if len(enc_chars) > 2 else "\\",
        subcomponent=enc_chars[3] if len(enc_chars) > 3 else "&",
    )
    segments = []
    for line in text.split(SEGMENT_END):
        line = line.strip("\x0b\x1c\n")
        if not line.strip():
            continue
        fields = tuple(line.split(fs))
        name = fields[0]
        if not re.fullmatch(r"[A-Z][A-Z0-9]{2}", name):
            raise HL7ParseError("a segment name is not three letters or digits", code="100")  # no input echoed
        if name == "MSH":
            fields = ("MSH", fs) + fields[1:]
        segments.append(fields)
    if not segments or segments[0][0] != "MSH":
        raise HL7ParseError("no MSH segment", code="100")
    return HL7Message(tuple(segments), enc, charset, codec)


_HEX = re.compile(r"X([0-9A-Fa-f]+)")


def unescape(value: str, enc: Encoding = Encoding(), codec: str = "utf-8") -> str:
    """Decode HL7 escape sequences (\\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\.br\\ \\Xhh\\; others dropped)."""
    esc = enc.escape
    if esc not in value:
        return value
    out: list[str] = []
    i = 0
    while i < len(value):
        ch = value[i]
        end = value.find(esc, i + 1) if ch == esc else -1
        if ch != esc or end < 0:
            out.append(ch)
            i += 1
            continue
        seq = value[i + 1 : end]
        i = end + 1
        if seq == "F":
            out.append(enc.field)
        elif seq == "S":
            out.append(enc.component)
        elif seq == "T":
            out.append(enc.subcomponent)
        elif seq == "R":
            out.append(enc.repetition)
        elif seq == "E":
            out.append(esc)
        elif seq in (".br", ".BR"):
            out.append("\n")
        elif (m := _HEX.fullmatch(seq)) and len(m.group(1)) % 2 == 0:
            out.append(bytes.fromhex(m.group(1)).decode(codec, "replace"))
        # \H\ \N\ (highlighting), \.sp\ and unknown sequences carry no text: drop them.
    return "".join(out)


def escape(value: str, enc: Encoding = Encoding()) -> str:
    """Encode text for an HL7 field (the inverse of :func:`unescape` for plain text)."""
    esc = enc.escape
    out = value.replace(esc, f"{esc}E{esc}")
    for ch, code in ((enc.field, "F"), (enc.component, "S"), (enc.subcomponent, "T"), (enc.repetition, "R")):
        out = out.replace(ch, f"{esc}{code}{esc}")
    return out.replace("\r\n", "\n").replace("\n", f"{esc}.br{esc}").replace("\r", f"{esc}.br{esc}")


def segment(name: str, fields: dict[int, str], enc: Encoding = Encoding()) -> str:
    """Build one segment from {field number: raw value}; positions are explicit, so an OBR-25
    never lands in OBR-23 by a miscounted run of separators."""
    if name == "MSH":
        width = max(fields, default=2)
        values = [fields.get(i, "") for i in range(3, width + 1)]
        return enc.field.join(
            ["MSH", enc.component + enc.repetition + enc.escape + enc.subcomponent] + values
        )
    width = max(fields, default=0)
    return enc.field.join([name] + [fields.get(i, "") for i in range(1, width + 1)])
