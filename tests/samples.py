"""Sample HL7 messages, each with its origin (all written for radflow's tests; no real patients)."""

# A Chinese chest CT result, UTF-8 (MSH-18 "UNICODE UTF-8"), findings and impression in separate
# OBX with LOINC codes, section titles, boilerplate and a repeated sentence the cleaner must drop.
ORU_ZH_UTF8 = (
    "MSH|^~\\&|RIS|XIHE|RADFLOW|RADFLOW|20260105080000||ORU^R01^ORU_R01|MSG0001|P|2.5.1|||AL|NE||UNICODE UTF-8\r"
    "PID|1||SYN0000001^^^XIHE^MR||DEMO^PATIENT\r"
    "OBR|1|PL1|ACC0001|CT0101^胸部CT平扫^L|||20260105080000|||||||||||||||||CT|F|||||||RAD001^Demo^Radiologist\r"
    "OBX|1|TX|18782-3^影像所见^LN||【检查所见】右肺上叶见磨玻璃结节影，大小约8mm。\\.br\\右肺上叶见磨玻璃结节影，大小约8mm。||||||F\r"
    "OBX|2|TX|19005-8^诊断意见^LN||【诊断意见】1. 右肺上叶磨玻璃结节，建议随访复查。\\.br\\以上意见仅供临床参考。||||||F\r"
).encode()

# The same kind of report in GB 18030, as a Chinese RIS that declares MSH-18 "GB 18030-2000" sends it.
ORU_ZH_GB18030 = (
    "MSH|^~\\&|RIS|NANHU|RADFLOW|RADFLOW|20260105080000||ORU^R01^ORU_R01|MSG0002|P|2.5.1|||AL|NE||GB 18030-2000\r"
    "OBR|1|PL2|ACC0002|CT0401^颅脑CT平扫^L|||20260105080000|||||||||||||||||CT|P\r"
    "OBX|1|TX|YXSJ^影像所见^L||影像所见：左侧基底节区见斑点状低密度影。||||||P\r"
).encode("gb18030")

# An English result with one narrative OBX sequence and FINDINGS:/IMPRESSION: headings.
ORU_EN_NARRATIVE = (
    "MSH|^~\\&|RIS|LAKEVIEW|RADFLOW|RADFLOW|20260105080000||ORU^R01|MSG0003|P|2.3\r"
    "OBR|1|PL3|ACC0003|MRKN^MRI KNEE^L|||20260105080000|||||||||||||||||MR|F\r"
    "OBX|1|TX|GDT^Report^L||FINDINGS:||||||F\r"
    "OBX|2|TX|GDT^Report^L||Small joint effusion in the left knee. The menisci are intact \\T\\ normal.||||||F\r"
    "OBX|3|TX|GDT^Report^L||IMPRESSION:||||||F\r"
    "OBX|4|TX|GDT^Report^L||Left knee effusion. Please correlate clinically.||||||F\r"
).encode("ascii")

# An ADT message: acknowledged and ignored.
ADT_A01 = b"MSH|^~\\&|ADT|XIHE|RADFLOW|RADFLOW|20260105||ADT^A01|MSG0004|P|2.5\rPID|1||SYN2^^^XIHE\r"

# A message type radflow rejects (AR): a financial transaction.
DFT_UNKNOWN = b"MSH|^~\\&|BILL|XIHE|RADFLOW|RADFLOW|20260105||ZZZ^Q01|MSG0005|P|2.5\r".replace(b"ZZZ", b"PGL")

# Not HL7 at all.
NOT_HL7 = b"GET / HTTP/1.1\r\nHost: example\r\n\r\n"
