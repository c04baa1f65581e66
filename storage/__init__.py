"""Persistence through sqlmodel: SQLite by default, PostgreSQL at scale."""

from storage.repository import Repository
from storage.tables import DraftRow, ScoreRow, SignedReportRow

__all__ = ["DraftRow", "Repository", "ScoreRow", "SignedReportRow"]
