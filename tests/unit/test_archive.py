"""An archive imported and replayed (radflow/archive.py, radflow/replay.py): the same split as
`radflow eval`, stored as ingest stores a signed result, sent as HL7 that ingest reads back into
the same segment; and the system a draft records, on the wire and in storage."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from evaluation.inputs import Fields, read_reports
from ingest.hl7 import parse
from ingest.outbound import SYSTEM_NOTE, draft_oru
from ingest.reports import to_report_event
from kernel.codes import ResultStatus
from radflow.archive import accession_for, read_split, served, signed_rows
from storage.repository import Repository
from storage.tables import DraftRow
from streams.records import DraftRecord, ScoreRecord
from training import dataset as ds

LONG_ID = "covctr-2019-novel-Coronavirus-severe-adult-respiratory-dist_2020_International-Jour-p3-89%0.png"


def _corpus(tmp_path: Path) -> Path:
    rows = [{"id": f"r{i}", "findings": f"Finding number {i}. The lungs are clear.",
             "impression": f"Impression {i}.\nPlease correlate clinically.", "body_part": "Chest"} for i in range(60)]
    rows.append({"id": LONG_ID, "findings": "胸廓对称，双肺纹理清晰。右肺上叶见磨玻璃影。", "impression": "右肺上叶炎性病变",
                 "body_part": "musculoskeletal"})
    path = tmp_path / "site.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    return path


def test_a_split_is_the_one_eval_uses(tmp_path: Path) -> None:
    path = _corpus(tmp_path)
    data = ds.build(read_reports([path], Fields()))
    for name, attr in (("train", "train"), ("validation", "val"), ("test", "test")):
        examples, _ = read_split([path], Fields(), name)
        assert [e.accession for e in examples] == [e.accession for e in data.split(attr)]
    everything, duplicates = read_split([path], Fields(), None)
    assert len(everything) == 61 and duplicates == 0
    salted = ds.build(read_reports([path], Fields()), salt="s1")
    test, _ = read_split([path], Fields(), "test", salt="s1")  # --split-salt: eval's salted split
    assert [e.accession for e in test] == [e.accession for e in salted.test] != [e.accession for e in data.test]


def test_import_stores_cleaned_reports_once(tmp_path: Path) -> None:
    examples, _ = read_split([_corpus(tmp_path)], Fields(), None)
    rows = signed_rows(examples)
    by_id = {e.accession: r for e, r in zip(examples, rows, strict=True)}
    assert by_id["r1"].impression == "Impression 1." and by_id["r1"].impression_raw.endswith("clinically.")
    assert by_id["r1"].body_system == "chest" and by_id["r1"].status == ResultStatus.FINAL
    zh = by_id[LONG_ID]
    assert zh.accession == accession_for(LONG_ID) and len(zh.accession) <= 64 and zh.body_system == "musculoskeletal"
    repository = Repository(f"sqlite:///{tmp_path / 'db.sqlite'}")
    assert repository.add_new_signed(rows) == 61
    assert repository.add_new_signed(signed_rows(examples)) == 0  # importing again changes nothing
    assert len(repository.signed_pairs()) == 61


def test_a_replayed_report_is_read_by_ingest_into_the_imported_segment(tmp_path: Path) -> None:
    examples, _ = read_split([_corpus(tmp_path)], Fields(), None)
    zh = next(e for e in examples if e.accession == LONG_ID)
    from radflow.replay import to_oru

    prelim = to_report_event(parse(to_oru(zh, ResultStatus.PRELIMINARY, "C1")))
    final_raw = to_oru(zh, ResultStatus.FINAL, "C2")
    assert b"|UNICODE UTF-8" in final_raw.split(b"\r")[0]
    final = to_report_event(parse(final_raw))
    stored = signed_rows([zh])[0]
    assert (prelim.institution, prelim.accession, prelim.body_system) == (zh.institution, served(zh).accession,
                                                                          stored.body_system)
    assert prelim.status == "P" and not prelim.impression and prelim.findings == stored.findings
    assert final.status == "F" and final.impression == stored.impression
    english = next(e for e in examples if e.accession == "r3")
    event = to_report_event(parse(to_oru(english, ResultStatus.FINAL, "C3")))
    assert event.body_system == "chest" and event.impression == "Impression 3."
    assert b"UNICODE" not in to_oru(english, ResultStatus.FINAL, "C3").split(b"\r")[0]


def test_the_worklist_message_names_the_system() -> None:
    msg = parse(draft_oru("XIHE", "A1", "右肺炎症。", "smollm2", system="consensus"))
    notes = [msg.text(n, 3) for n in msg.all("NTE")]
    assert f"{SYSTEM_NOTE}consensus" in notes
    assert len(parse(draft_oru("XIHE", "A1", "x", "m")).all("NTE")) == 1  # no system: the one note as before


def test_records_without_a_system_still_read_and_rows_keep_it() -> None:
    old = {"kind": "draft", "schema_version": 1, "institution": "A", "accession": "1", "body_system": "chest",
           "language": "en", "findings": "f", "draft": "d"}
    assert DraftRecord.from_dict(old).system == ""
    record = DraftRecord.from_dict(old | {"system": "retrieval"})
    assert record.to_row().system == "retrieval"
    score = ScoreRecord("A", "1", "chest", "en", 0.5, 0.4, 0.3, 0, 0, system="consensus")
    assert score.to_row().system == "consensus"


def test_an_older_database_gets_the_system_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:  # the drafts table as radflow made it before systems
        db.execute("CREATE TABLE drafts (id INTEGER PRIMARY KEY, institution VARCHAR NOT NULL, accession VARCHAR "
                   "NOT NULL, body_system VARCHAR, language VARCHAR, findings VARCHAR, draft VARCHAR, model_id "
                   "VARCHAR, adapter_version VARCHAR, template_id VARCHAR, guard VARCHAR, status VARCHAR, delivery "
                   "VARCHAR, latency_ms FLOAT, created_at FLOAT, UNIQUE (institution, accession))")
        db.execute("INSERT INTO drafts (institution, accession, body_system, draft) VALUES ('A', '1', 'chest', 'old draft')")
    repository = Repository(f"sqlite:///{path}")
    old = repository.get(DraftRow, "A", "1")
    assert old is not None and old.system == "" and old.draft == "old draft"
    repository.upsert(DraftRow(institution="A", accession="2", body_system="chest", draft="new", system="retrieval"))
    assert repository.drafted_by_system() == {("A", "chest"): {"": 1, "retrieval": 1}}


async def test_replay_sends_each_exam_p_then_f_and_tallies_the_acks(tmp_path: Path) -> None:
    from radflow.replay import Replay
    from tests.fake_ris import fake_ris

    examples, _ = read_split([_corpus(tmp_path)], Fields(), None)
    examples = examples[:9]
    for finals in ("after-draft", "at-end", "none"):
        async with fake_ris() as ris:
            tally = await Replay("127.0.0.1", ris.port, connections=3, finals=finals, delay=0.0,  # type: ignore[arg-type]
                                 progress=False).run(examples)
            events = [to_report_event(parse(m)) for m in ris.received]
        sent = [(e.accession, e.status) for e in events]
        expected_finals = 0 if finals == "none" else 9
        assert tally.acks == {("P", "AA"): 9, **({("F", "AA"): 9} if expected_finals else {})}
        assert len({a for a, s in sent if s == "P"}) == 9 and sum(s == "F" for _, s in sent) == expected_finals
        for accession in {a for a, _ in sent}:  # one exam per accession, the preliminary first
            statuses = [s for a, s in sent if a == accession]
            assert statuses[0] == "P" and statuses.count("P") == 1
        if finals == "at-end":
            first_final = next(i for i, (_, s) in enumerate(sent) if s == "F")
            assert all(s == "P" for _, s in sent[:first_final]) and first_final == 9


async def test_replay_counts_an_unreachable_listener_as_send_errors(tmp_path: Path) -> None:
    from radflow.replay import Replay
    from tests.conftest import free_port

    examples, _ = read_split([_corpus(tmp_path)], Fields(), None)
    with pytest.raises(OSError):  # `radflow replay` turns it into a one-line error naming --port
        await Replay("127.0.0.1", free_port(), connections=1, progress=False).run(examples[:1])


def test_the_summary_names_each_segments_system_and_scores_all_time(tmp_path: Path) -> None:
    from storage.tables import ScoreRow
    from streams.pages import render_overview
    from streams.serving_view import name_systems, segment_systems, served_summary

    repository = Repository(f"sqlite:///{tmp_path / 'db.sqlite'}")
    repository.promote_system("A", "chest", "consensus", "test")
    for i, (body, system, rouge) in enumerate([("chest", "consensus", 0.6), ("chest", "consensus", 0.4),
                                                ("head", "retrieval", 0.1)]):
        repository.upsert(DraftRow(institution="A", accession=str(i), body_system=body, draft="d", system=system))
        repository.upsert(ScoreRow(institution="A", accession=str(i), body_system=body, rougeL=rouge, system=system))
    summary = served_summary(repository)
    assert summary["systems"] == [
        {"institution": "A", "body_system": "chest", "serving": "consensus", "drafted": {"consensus": 2}},
        {"institution": "A", "body_system": "head", "serving": "retrieval", "drafted": {"retrieval": 1}}]
    (a,) = summary["served"]
    assert a["n"] == 3 and a["rougeL"] == pytest.approx(1.1 / 3) and a["systems"] == {"consensus": 2, "retrieval": 1}
    segments = name_systems(repository.segment_summary(), segment_systems(repository))
    page = render_overview(segments, {}, [], "")
    assert "<td class=system>consensus</td>" in page and "<td class=system>retrieval</td>" in page
