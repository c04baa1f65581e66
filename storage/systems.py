"""Which drafting system serves each segment (institution × body system): the champion, the ones
it replaced (for rollback) and the gate's evidence. Part of ``storage.repository.Repository``,
kept apart like the adapter registry."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from kernel.codes import AdapterStatus
from kernel.errors import StorageError
from storage import totals
from storage.tables import DraftRow, SystemEvalRow, SystemRow

Segment = tuple[str, str]  # (institution, body system)


class SystemRegistry:
    engine: Engine

    def system_history(self, institution: str | None = None) -> list[SystemRow]:
        with Session(self.engine) as session:
            stmt = select(SystemRow)
            if institution is not None:
                stmt = stmt.where(SystemRow.institution == institution)
            return list(session.exec(stmt.order_by(col(SystemRow.institution), col(SystemRow.body_system),
                                                   col(SystemRow.id))).all())

    def system_champions(self) -> dict[Segment, str]:
        """The serving system of each segment that has one chosen."""
        return {(r.institution, r.body_system): r.system for r in self.system_history()
                if r.status == AdapterStatus.CHAMPION}

    def promote_system(self, institution: str, body_system: str, system: str, reason: str, n: int = 0,
                       delta: float = 0.0, p_value: float = 1.0) -> SystemRow:
        """``system`` serves the segment from now; the champion before it is retired (kept for rollback)."""
        with Session(self.engine) as session:
            for row in session.exec(select(SystemRow).where(SystemRow.institution == institution,
                                                            SystemRow.body_system == body_system,
                                                            SystemRow.status == AdapterStatus.CHAMPION)):
                row.status = AdapterStatus.RETIRED
                session.add(row)
            new = SystemRow(institution=institution, body_system=body_system, system=system, reason=reason, n=n,
                            delta_rougeL=delta, p_value=p_value, promoted_at=time.time())
            session.add(new)
            session.commit()
            session.refresh(new)
            return new

    def rollback_system(self, institution: str, body_system: str) -> SystemRow:
        """Serve the segment's previous champion again; the current one is marked rejected."""
        rows = [r for r in self.system_history(institution) if r.body_system == body_system]
        current = next((r for r in rows if r.status == AdapterStatus.CHAMPION), None)
        earlier = [r for r in rows if r.status == AdapterStatus.RETIRED and (current is None or r.system != current.system)]
        if not earlier:
            raise StorageError(f"segment {institution}/{body_system} has no earlier system to roll back to")
        replaced, back = (current.system if current else "-"), earlier[-1].system
        if current is not None:
            with Session(self.engine) as session:
                current.status = AdapterStatus.REJECTED  # rolled back: never chosen again by a later rollback
                session.add(current)
                session.commit()
        return self.promote_system(institution, body_system, back, f"rollback from {replaced}")

    def system_evals(self, run_at: float | None = None) -> list[SystemEvalRow]:
        """The gate's evidence: of one run, or of the latest run of each segment."""
        with Session(self.engine) as session:
            rows = list(session.exec(select(SystemEvalRow).order_by(col(SystemEvalRow.id))).all())
        if run_at is not None:
            return [r for r in rows if r.run_at == run_at]
        latest: dict[Segment, float] = {}
        for r in rows:
            latest[(r.institution, r.body_system)] = max(latest.get((r.institution, r.body_system), 0.0), r.run_at)
        return [r for r in rows if r.run_at == latest[(r.institution, r.body_system)]]

    def served_by_system(self) -> list[dict[str, Any]]:
        """Every score so far, per institution × body system × the system that drafted it: n and
        mean R-1/R-2/R-L (all time, not the dashboard's rolling window), from the running sums."""
        with Session(self.engine) as session:
            return totals.read(session)

    def latest_system(self, institution: str, body_system: str) -> str:
        """The system of the segment's newest draft ("" if it names none, or there is none): one
        read of the drafts index (institution, body_system, created_at) from its newest end."""
        with Session(self.engine) as session:
            found = session.exec(select(DraftRow.system).where(
                DraftRow.institution == institution, DraftRow.body_system == body_system)
                .order_by(col(DraftRow.created_at).desc()).limit(1)).first()
        return found or ""

    def drafted_by_system(self) -> dict[Segment, dict[str, int]]:
        """How many drafts each system made per segment (reads every draft: for `radflow systems
        list`, not the dashboard, which counts scored drafts from the running sums)."""
        with Session(self.engine) as session:
            rows = session.exec(select(DraftRow.institution, DraftRow.body_system, DraftRow.system, func.count())
                                .group_by(DraftRow.institution, DraftRow.body_system, DraftRow.system)).all()
        out: dict[Segment, dict[str, int]] = defaultdict(dict)
        for institution, body_system, system, n in rows:
            out[(institution, body_system)][system] = int(n)
        return dict(out)

    # -- an archive loaded before go-live (radflow import) -------------------------------------
    def add_new_signed(self, rows: list[Any], batch: int = 500) -> int:
        """Insert the signed reports whose (institution, accession) is not stored yet; returns how
        many were new. A report already stored (an earlier import, or live traffic) is kept as it is,
        so importing the same archive twice changes nothing."""
        from storage.tables import SignedReportRow

        with Session(self.engine) as session:
            known = set(session.exec(select(SignedReportRow.institution, SignedReportRow.accession)).all())
        fresh, seen = [], set()
        for row in rows:
            key = (row.institution, row.accession)
            if key not in known and key not in seen:
                seen.add(key)
                fresh.append(type(row)(**row.model_dump(exclude={"id"})))  # the caller's rows stay detached
        for start in range(0, len(fresh), batch):
            with Session(self.engine) as session:
                session.add_all(fresh[start : start + batch])
                session.commit()
        return len(fresh)
