"""The indexes the dashboard's queries read through, declared apart from the tables.

``create_all`` makes them with a new table but skips a table that exists, so a database made by
an older radflow gets them from ``ensure`` (CREATE INDEX IF NOT EXISTS, on SQLite and PostgreSQL).
Each one turns a per-segment question into a range read of the rows it answers with:

- ``scores (institution, body_system, created_at, id)``: a segment's newest scores (the rolling
  means, the drill-down) and the segments themselves (a loose scan, one seek per segment);
- ``scores (institution, created_at, id)``: an institution's newest scores;
- ``drift_chunks (institution, body_system, chunk, id)``: a segment's latest drift windows;
- ``drift_chunks (reference, institution, body_system)``: the reference windows per segment;
- ``drafts (status, created_at, id)``: the worklist's oldest waiting drafts (storage/pending.py);
- ``drafts (institution, body_system, created_at)``: a segment's newest draft, whose system serves
  the segment while no champion is chosen (streams/serving_view.py);
- ``signed_reports (received_at)``: the reports signed since the score agent's last sweep for
  pairs with no score (``Repository.unscored_pairs``; drafts have their ``created_at`` index);
- ``drafts (delivery, created_at)``: the drafts due to the RIS worklist (storage/deliveries.py),
  a few among a year of delivered ones.
"""

from __future__ import annotations

from sqlalchemy import Engine, Index, text
from sqlmodel import col

from storage.tables import DraftRow, DriftChunkRow, ScoreRow, SignedReportRow

INDEXES = (
    Index("ix_scores_segment_newest", col(ScoreRow.institution), col(ScoreRow.body_system),
          col(ScoreRow.created_at), col(ScoreRow.id)),
    Index("ix_scores_institution_newest", col(ScoreRow.institution), col(ScoreRow.created_at), col(ScoreRow.id)),
    Index("ix_drift_chunks_segment_chunk", col(DriftChunkRow.institution), col(DriftChunkRow.body_system),
          col(DriftChunkRow.chunk), col(DriftChunkRow.id)),
    Index("ix_drift_chunks_reference", col(DriftChunkRow.reference), col(DriftChunkRow.institution),
          col(DriftChunkRow.body_system)),
    Index("ix_drafts_status_oldest", col(DraftRow.status), col(DraftRow.created_at), col(DraftRow.id)),
    Index("ix_drafts_segment_newest", col(DraftRow.institution), col(DraftRow.body_system), col(DraftRow.created_at)),
    Index("ix_signed_reports_received", col(SignedReportRow.received_at)),
    Index("ix_drafts_delivery", col(DraftRow.delivery), col(DraftRow.created_at)),
)


def ensure(engine: Engine) -> None:
    """Create the indexes an existing database lacks (a no-op once they are there)."""
    with engine.begin() as connection:
        for index in INDEXES:
            table = index.table
            assert table is not None
            columns = ", ".join(column.name for column in index.columns)
            connection.execute(text(f"CREATE INDEX IF NOT EXISTS {index.name} ON {table.name} ({columns})"))
