"""Persistence through sqlmodel: SQLite by default, PostgreSQL at scale."""

from storage.repository import Repository
from storage.tables import AlertRow, DraftRow, DriftChunkRow, OrderRow, ScoreRow, SignedReportRow

__all__ = ["AlertRow", "DriftChunkRow", "DraftRow", "OrderRow", "Repository", "ScoreRow", "SignedReportRow"]
