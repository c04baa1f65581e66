"""Shared fixtures: a clean environment, a tiny real model, free ports."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from model.acquire.bootstrap import BootstrapConfig, bootstrap
from radflow.demodata import generate_reports, write_pairs

#: Small enough to train in seconds on two cores, big enough to emit real tokens.
TINY = BootstrapConfig(steps=40, vocab_size=700, hidden_size=64, layers=2, heads=4, kv_heads=2,
                       intermediate_size=128, max_length=256, batch_size=8)


#: ChatML, the format of SmolLM2-Instruct and many other instruct bases.
CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
          "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("RADFLOW_"):
            monkeypatch.delenv(key)


@pytest.fixture(scope="session")
def pairs_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_pairs(generate_reports(6, seed=3), tmp_path_factory.mktemp("data") / "pairs.jsonl")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, pairs_file: Path) -> Path:
    return bootstrap(pairs_file, tmp_path_factory.mktemp("model") / "tiny", TINY, progress=False)


@pytest.fixture(scope="session")
def tiny_chat_model(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Path:
    """The tiny model, its tokenizer given a chat template (as an instruct base has)."""
    import shutil

    from transformers import AutoTokenizer

    path = tmp_path_factory.mktemp("chat") / "tiny-chat"
    shutil.copytree(tiny_model, path)
    tok = AutoTokenizer.from_pretrained(path)
    tok.chat_template = CHATML
    tok.save_pretrained(path)
    return path


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tiers by folder: everything under tests/integration is marked ``integration`` (a conftest's
    ``pytestmark`` marks nothing). ``gpu`` tests skip without CUDA."""
    integration = Path(__file__).parent / "integration"
    cuda: bool | None = None
    for item in items:
        if integration in Path(item.path).parents:
            item.add_marker(pytest.mark.integration)
        if item.get_closest_marker("gpu") is not None:
            if cuda is None:
                import torch

                cuda = torch.cuda.is_available()
            if not cuda:
                item.add_marker(pytest.mark.skip(reason="needs CUDA (gpu marker)"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
