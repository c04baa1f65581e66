"""Topic names. Every source topic has the same partition count as the table changelogs.

Keys: the exam topics (reports, orders, drafts) by "institution|accession", so one exam's
events meet on one partition; scores and alerts by segment (``segment_key``); adapter changes
by adapter name; dead letters by the sending peer."""

from __future__ import annotations

from dataclasses import dataclass

from ingest.listener import IngestTopics
from kernel.codes import WorkerRole


@dataclass(frozen=True)
class TopicNames:
    prefix: str = "radflow"

    @property
    def reports(self) -> str:
        return f"{self.prefix}.reports"

    @property
    def drafts(self) -> str:
        return f"{self.prefix}.drafts"

    @property
    def scores(self) -> str:
        return f"{self.prefix}.scores"

    @property
    def orders(self) -> str:
        return f"{self.prefix}.orders"

    @property
    def alerts(self) -> str:
        return f"{self.prefix}.alerts"

    @property
    def adapters(self) -> str:
        """Promotions and rollbacks: every draft worker hot-swaps on them (read without a group)."""
        return f"{self.prefix}.adapters"

    @property
    def dead_letter(self) -> str:
        return f"{self.prefix}.dead-letter"

    @property
    def app_id(self) -> str:
        return self.app_id_for("all")

    def app_id_for(self, role: str) -> str:
        """Each worker role is its own consumer group: drafters and quality workers scale apart."""
        return {WorkerRole.ALL: f"{self.prefix}-worker", WorkerRole.DRAFT: f"{self.prefix}-drafter"}.get(
            WorkerRole(role), f"{self.prefix}-quality")

    def source_topics(self) -> list[str]:
        return [self.reports, self.orders, self.drafts, self.scores, self.alerts, self.adapters, self.dead_letter]

    def ingest(self) -> IngestTopics:
        """The topics the MLLP listener writes to."""
        return IngestTopics(self.reports, self.dead_letter, self.orders)

    @staticmethod
    def segment_key(institution: str, body_system: str, adapter_version: str) -> str:
        """Scores, drift windows and alerts are keyed by segment, not by exam."""
        return f"{institution}|{body_system}|{adapter_version}"

    def changelog_topics(self, role: str = "all") -> list[str]:
        if role == WorkerRole.DRAFT:
            return []  # drafters keep no tables
        app_id = self.app_id_for(role)
        return [f"{app_id}-pairs-changelog", f"{app_id}-drift-changelog"]
