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


def test_the_demo_waits_for_every_full_drift_window_of_its_segments(tmp_path) -> None:
    """The dashboard opens with every chart drawn: the drift agent closes windows after the scores
    are stored, so the demo waits for it (real SQLite; the windows of 3 of the warm-up)."""
    from kernel.settings import Settings
    from radflow.demo import wait_for_charts
    from storage.repository import Repository
    from storage.tables import ScoreRow

    repo = Repository(f"sqlite:///{tmp_path / 'r.sqlite'}")
    keys = {("XIHE", f"A{i}") for i in range(7)}  # 6 chest: two windows of 3; 1 head: none full yet
    for i in range(7):
        repo.upsert(ScoreRow(institution="XIHE", accession=f"A{i}", body_system="head" if i == 6 else "chest"))
    settings = Settings(drift_chunk=20, drift_first_chunk=3)
    assert not wait_for_charts(repo, keys, settings, stall=0.6)  # nothing counted: it gives up
    for i in range(3):
        assert repo.count_in_drift("XIHE", f"A{i}", 0, [])
    assert not wait_for_charts(repo, keys, settings, stall=0.6)  # one window of the two
    for i in range(3, 6):
        assert repo.count_in_drift("XIHE", f"A{i}", 1, [])
    assert wait_for_charts(repo, keys, settings, stall=0.6)  # head's one score closes no window
    repo.close()
