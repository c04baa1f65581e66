"""The worklist sender against a real MLLP server on loopback."""

import pytest

from ingest.ack import ACCEPT, ERROR, REJECT
from ingest.hl7 import parse
from ingest.outbound import DRAFT_OBSERVATION, draft_oru
from streams.worklist import WorklistSender
from tests.conftest import free_port
from tests.fake_ris import fake_ris


def test_draft_message_is_marked_preliminary_and_machine_made() -> None:
    msg = parse(draft_oru("XIHE", "ACC1", "右肺上叶磨玻璃结节。", "tiny@1"))
    obr, obx = msg.segment("OBR"), msg.segment("OBX")
    assert msg.field(obr, 25) == "P" and msg.field(obr, 3) == "ACC1"
    assert msg.field(obx, 3) == DRAFT_OBSERVATION and msg.field(obx, 11) == "P"
    assert msg.text(obx, 5) == "右肺上叶磨玻璃结节。" and "Machine-generated" in msg.text(obx, 17, 2)


@pytest.mark.parametrize(("codes", "outcome", "attempts"),
                         [([ACCEPT], "AA", 1), ([ERROR, ACCEPT], "AA", 2), ([REJECT], "AR", 1), ([ERROR], "failed", 3)])
async def test_retries_errors_not_rejections(codes: list[str], outcome: str, attempts: int) -> None:
    async with fake_ris(codes) as ris:
        sender = WorklistSender({"*": ("127.0.0.1", ris.port)}, retries=3, backoff=0.01)
        assert await sender.send("XIHE", draft_oru("XIHE", "A1", "x", "m")) == outcome
        assert len(ris.received) == attempts


async def test_unreachable_and_unrouted() -> None:
    sender = WorklistSender({"XIHE": ("127.0.0.1", free_port())}, retries=2, backoff=0.01)
    assert await sender.send("XIHE", b"MSH|") == "failed"
    assert await sender.send("NANHU", b"MSH|") == "unrouted"


def test_routes_setting_is_validated() -> None:
    from kernel.errors import SettingsError
    from kernel.settings import Settings

    assert Settings.from_env({"RADFLOW_WORKLIST_ROUTES": "XIHE=ris:2575,*=10.0.0.5:2576"}).parsed_worklist_routes() == {
        "XIHE": ("ris", 2575), "*": ("10.0.0.5", 2576)}
    with pytest.raises(SettingsError, match="RADFLOW_WORKLIST_ROUTES"):
        Settings.from_env({"RADFLOW_WORKLIST_ROUTES": "XIHE=ris"})
