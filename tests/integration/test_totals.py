"""The running sums of served_totals on both databases (a real PostgreSQL server included): they
equal the GROUP BY over the scores through inserts, a correction, a replay and a retraction, and
a database made before the table existed is back-filled once when opened."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.repository import Repository
from tests.integration.test_storage_backends import _open
from tests.unit.test_totals import assert_same, assert_totals_match, backfilled, exercise


@pytest.fixture(params=["sqlite", "postgresql"])
def repository(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Repository]:
    repository = _open(request, tmp_path)
    yield repository
    repository.close()


def test_the_running_sums_equal_the_group_by_and_survive_a_back_fill(repository: Repository) -> None:
    exercise(repository)
    expected = repository.served_by_system()
    reopened = backfilled(repository)
    try:
        assert_same(reopened.served_by_system(), expected)
        assert_totals_match(reopened)
    finally:
        reopened.close()
