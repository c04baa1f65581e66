"""HL7 v2 ingest: MLLP transport, parsing into typed report events, cleaning, producing.

Nothing past this package sees raw HL7 structures: it hands on :class:`ReportEvent`.
"""

from ingest.events import DeadLetter, ReportEvent

__all__ = ["DeadLetter", "ReportEvent"]
