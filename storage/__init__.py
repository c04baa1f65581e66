"""Persistence through sqlmodel: SQLite by default, PostgreSQL at scale."""

from storage.repository import Repository
from storage.tables import DraftRow, OrderRow, ScoreRow, SignedReportRow

__all__ = ["DraftRow", "OrderRow", "Repository", "ScoreRow", "SignedReportRow"]
