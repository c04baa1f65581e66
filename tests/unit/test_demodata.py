from collections import Counter

from ingest.hl7 import parse
from ingest.reports import to_report_event
from kernel.codes import CLASSIFIED_BODY_SYSTEMS as BODY_SYSTEMS  # the systems the demo writes
from radflow.demodata import INSTITUTIONS, feed, generate_reports


def test_every_institution_and_body_system_round_trips_through_ingest() -> None:
    reports = generate_reports(2, seed=1)
    seen = Counter()
    for item in feed(reports, seed=1):
        event = to_report_event(parse(item.message))
        assert (event.institution, event.accession, event.body_system) == (
            item.report.institution, item.report.accession, item.report.body_system)
        assert event.findings == item.report.findings
        if item.status == "F":
            assert event.impression == item.report.impression
        seen[(event.institution, event.body_system, item.status)] += 1
    assert len(seen) == len(INSTITUTIONS) * len(BODY_SYSTEMS) * 2
    assert {s.language for s in INSTITUTIONS} == {"zh", "en"}


def test_preliminary_comes_before_signed() -> None:
    order = [(i.report.accession, i.status) for i in feed(generate_reports(3, seed=2), seed=2)]
    for accession in {a for a, _ in order}:
        assert order.index((accession, "P")) < order.index((accession, "F"))


def test_gb18030_institution_sends_gb18030_bytes() -> None:
    nanhu = next(i for i in feed(generate_reports(1, seed=1)) if i.report.institution == "NANHU")
    assert b"GB 18030-2000" in nanhu.message
    nanhu.message.decode("gb18030")


def test_generator_is_reproducible() -> None:
    assert generate_reports(2, seed=5) == generate_reports(2, seed=5)
