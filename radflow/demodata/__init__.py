"""Synthetic radiology reports and HL7 feeds for the demo, the bootstrap model, bench and the tests.

No real patient data: every name, identifier and report is made up here. Each institution has
its own style (section titles, phrasing, numbering, boilerplate, character set and OBX layout),
as real RIS exports differ (the paper's "inconsistencies between institutions").

Never imported by the production path (ingest, streams, model, training, storage, the worker and
the listener): only by the demo and `radflow demo-data`, which import it when they run.
"""

from radflow.demodata.hl7 import FeedItem, expected_ack, feed, to_hl7
from radflow.demodata.reports import INSTITUTIONS, DemoReport, Style, generate_reports, write_pairs

__all__ = ["INSTITUTIONS", "DemoReport", "FeedItem", "Style", "expected_ack", "feed",
           "generate_reports", "to_hl7", "write_pairs"]
