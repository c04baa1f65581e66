from pathlib import Path

import pytest

from ingest.hl7 import parse
from ingest.listener import IngestTopics, Listener
from ingest.mapping import DEFAULT_MAPPING, load_mapping, load_mappings
from ingest.reports import to_report_event
from ingest.sink import ListSink
from kernel.errors import IngestError

# A RIS that labels its OBX with local codes nobody else uses, and adds its own boilerplate.
LOCAL_CODES = (
    "MSH|^~\\&|RIS|EASTCOAST|RADFLOW|RADFLOW|20260105||ORU^R01|M1|P|2.5||||||UNICODE UTF-8\r"
    "OBR|1||EC1|X77^Special study^L|||20260105|||||||||||||||||F\r"
    "OBX|1|TX|OBS-A^^L||右肺上叶见结节。||||||F\r"
    "OBX|2|TX|OBS-B^^L||右肺上叶结节。本报告经二级审核。||||||F\r"
).encode()


def test_yaml_mapping_adds_to_defaults(tmp_path: Path) -> None:
    (tmp_path / "EASTCOAST.yaml").write_text(
        "findings_ids: [OBS-A]\nimpression_ids: [OBS-B]\nboilerplate: [本报告经二级审核]\nbody_systems: {X77: chest}\n",
        encoding="utf-8",
    )
    mappings = load_mappings(tmp_path)
    mapping = mappings["EASTCOAST"]
    assert "OBS-A" in mapping.findings_ids and "18782-3" in mapping.findings_ids
    event = to_report_event(parse(LOCAL_CODES), mapping)
    assert (event.findings, event.impression, event.body_system) == ("右肺上叶见结节。", "右肺上叶结节。", "chest")
    # without the mapping nothing is recognised
    assert to_report_event(parse(LOCAL_CODES), DEFAULT_MAPPING).impression == ""


async def test_listener_picks_the_mapping_by_sending_facility(tmp_path: Path) -> None:
    (tmp_path / "EASTCOAST.yml").write_text("findings_ids: [OBS-A]\nimpression_ids: [OBS-B]\n")
    sink = ListSink()
    await Listener(sink, IngestTopics("r", "d"), load_mappings(tmp_path)).handle(LOCAL_CODES, "peer")
    assert "右肺上叶结节" in sink.records[0][2].decode()


def test_bad_mapping_files_name_the_problem(tmp_path: Path) -> None:
    bad = tmp_path / "X.yaml"
    bad.write_text("findings: [A]\n")
    with pytest.raises(IngestError, match="unknown keys"):
        load_mapping(bad)
    bad.write_text("body_systems: {A: thorax}\n")
    with pytest.raises(IngestError, match="thorax"):
        load_mapping(bad)
    with pytest.raises(IngestError, match="RADFLOW_MAPPINGS_DIR"):
        load_mappings(tmp_path / "missing")
