"""Which journal entries are done downstream: real SQLite, rows as the agents store them."""

from pathlib import Path

from storage.processed import done_seqs, mark_processed
from storage.repository import Repository
from storage.tables import DraftRow, ScoreRow, SignedReportRow


def test_done_needs_every_stage_marked_and_a_complete_pair(tmp_path: Path) -> None:
    repo = Repository(f"sqlite:///{tmp_path / 'r.sqlite'}")
    candidates = [
        (1, "X|P1", "draft", "X", "A1"),  # preliminary, drafted, no signed report yet
        (2, "X|F1", "score", "X", "A1"),
        (3, "X|P2", "draft", "X", "A2"),  # drafted, signed, but the score is missing
        (4, "X|P3", "draft", "X", "A3"),  # not drafted yet
        (5, "X|O1", "orders", "X", "A4"),
    ]
    mark_processed(repo, ["X|P1", "X|P2"], "draft")
    mark_processed(repo, ["X|P1", "X|P2"], "draft")  # a replay marks nothing twice
    mark_processed(repo, ["X|F1"], "score")
    repo.upsert(DraftRow(institution="X", accession="A2", draft="d"))
    repo.upsert(SignedReportRow(institution="X", accession="A2", status="F", impression="i"))
    assert done_seqs(repo, candidates) == [1, 2]
    repo.upsert(ScoreRow(institution="X", accession="A2"))
    mark_processed(repo, ["X|O1"], "orders")
    assert done_seqs(repo, candidates) == [1, 2, 3, 5]
