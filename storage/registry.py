"""The adapter registry and the training runs in storage: which adapter version serves (the
champion alias), which served before (for rollback), and what each refit did."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from kernel.codes import AdapterStatus
from kernel.errors import StorageError
from storage.tables import AdapterEvalRow, AdapterRow, TrainingRunRow


class AdapterRegistry:
    """Part of ``storage.repository.Repository`` (kept apart: a second reason to change)."""

    engine: Engine

    def save(self, row: Any) -> Any:
        """Insert or update a row by its id (runs, adapters); returns it with its id."""
        with Session(self.engine) as session:
            merged = session.merge(row)
            session.commit()
            session.refresh(merged)
            return merged

    def adapters(self, name: str | None = None) -> list[AdapterRow]:
        with Session(self.engine) as session:
            stmt = select(AdapterRow)
            if name is not None:
                stmt = stmt.where(AdapterRow.name == name)
            return list(session.exec(stmt.order_by(col(AdapterRow.name), col(AdapterRow.version))).all())

    def champions(self) -> dict[str, AdapterRow]:
        """The serving version of each adapter name."""
        return {row.name: row for row in self.adapters() if row.status == AdapterStatus.CHAMPION}

    def promote(self, name: str, version: str) -> AdapterRow:
        """Make ``name/version`` the champion; the previous champion is retired (kept for rollback)."""
        with Session(self.engine) as session:
            rows = session.exec(select(AdapterRow).where(AdapterRow.name == name)).all()
            target = next((r for r in rows if r.version == version), None)
            if target is None:
                raise StorageError(f"no adapter {name}/{version}")
            for row in rows:
                if row.status == AdapterStatus.CHAMPION and row is not target:
                    row.status = AdapterStatus.RETIRED
                    session.add(row)
            target.status, target.promoted_at = AdapterStatus.CHAMPION, time.time()
            session.add(target)
            session.commit()
            session.refresh(target)
            return target

    def rollback(self, name: str) -> AdapterRow:
        """Serve the previously promoted version of ``name`` again."""
        rows = [r for r in self.adapters(name) if r.status in (AdapterStatus.RETIRED, AdapterStatus.CHAMPION) and r.promoted_at]
        current = next((r for r in rows if r.status == AdapterStatus.CHAMPION), None)
        earlier = sorted((r for r in rows if r.status == AdapterStatus.RETIRED), key=lambda r: r.promoted_at or 0.0)
        if not earlier:
            raise StorageError(f"adapter {name} has no earlier champion to roll back to")
        with Session(self.engine) as session:
            if current is not None:
                current.status = AdapterStatus.REJECTED  # rolled back: never chosen again by a later rollback
                session.add(current)
                session.commit()
        return self.promote(name, earlier[-1].version)

    def runs(self, name: str | None = None, limit: int = 50) -> list[TrainingRunRow]:
        with Session(self.engine) as session:
            stmt = select(TrainingRunRow)
            if name is not None:
                stmt = stmt.where(TrainingRunRow.name == name)
            return list(session.exec(stmt.order_by(col(TrainingRunRow.id).desc()).limit(limit)).all())

    def unfinished_run(self, name: str) -> TrainingRunRow | None:
        with Session(self.engine) as session:
            return session.exec(select(TrainingRunRow).where(TrainingRunRow.name == name,
                                                             TrainingRunRow.state == "running")
                                .order_by(col(TrainingRunRow.id).desc())).first()

    def evals(self, run_id: int) -> list[AdapterEvalRow]:
        with Session(self.engine) as session:
            return list(session.exec(select(AdapterEvalRow).where(AdapterEvalRow.run_id == run_id)).all())
