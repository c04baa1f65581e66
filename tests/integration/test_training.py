"""Refits on the real path: signed reports in SQLite, a real tiny model, LoRA on CPU, the gate,
the champion alias, a killed run resuming, and a running worker hot-swapping on a promotion."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from ingest.mllp import MLLPClient, ack_code
from ingest.service import start_ingest
from model.acquire.bootstrap import BootstrapConfig, bootstrap
from model.adapters import read_spec, write_meta
from radflow import cli
from radflow.demodata import INSTITUTIONS, generate_reports, to_hl7
from radflow.services import adapter_publisher
from storage.repository import Repository
from storage.tables import AdapterRow, DraftRow, SignedReportRow, TrainingRunRow
from streams.topics import TopicNames
from tests.integration.conftest import wait_for, wait_until
from training.lora import CHECKPOINT, train_adapter
from training.recipe import Recipe
from training.refit import Refitter

#: An institution whose radiologists end every impression item with a follow-up advice.
ODD = dataclasses.replace(INSTITUTIONS[0], code="ODD", name="Odd Hospital (demo)", numbered=False,
                          impression_replacements=(("；", "，建议复查；"), ("。", "，建议复查。")))
BASE = BootstrapConfig(steps=150, vocab_size=700, hidden_size=64, layers=2, heads=4, kv_heads=2,
                       intermediate_size=128, max_length=256, batch_size=8)
RECIPE = Recipe.load("embedded").replace(templates=("1",), r=8, epochs=6, packing=False, effective_batch=8,
                                         micro_batch=8, lr=3e-3, min_examples=20, min_segment=10, permutations=500)


@dataclasses.dataclass
class World:
    model: Path
    adapters: Path
    repo: Repository
    shared: str
    odd: object


def _store(repo: Repository, reports) -> None:
    for r in reports:
        repo.upsert(SignedReportRow(institution=r.institution, accession=r.accession, status="F",
                                    body_system=r.body_system, language=r.language, findings=r.findings,
                                    impression=r.impression))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, pairs_file: Path) -> World:
    root = tmp_path_factory.mktemp("refit")
    model = bootstrap(pairs_file, root / "base", BASE, progress=False)
    repo = Repository(f"sqlite:///{root / 'radflow.sqlite'}")
    _store(repo, generate_reports(60, seed=5, institutions=INSTITUTIONS + (ODD,)))
    shared = Refitter(repo, model, root / "adapters", RECIPE.replace(epochs=1), progress=False).refit("shared")
    if shared.decision != "promoted":  # the comparison below is against a shared adapter either way
        repo.promote("shared", shared.version)
    odd = Refitter(repo, model, root / "adapters", RECIPE, progress=False).refit("ODD")
    return World(model, root / "adapters", repo, shared.version, odd)


def test_refit_of_an_institution_that_writes_differently_beats_the_shared_adapter(world: World) -> None:
    run = next(r for r in world.repo.runs("ODD") if r.id == world.odd.run_id)
    metrics = json.loads(run.metrics)
    assert world.odd.decision == "promoted", run.reason
    assert metrics["challenger"]["rougeL"] > metrics["champion"]["rougeL"] + 0.03
    assert run.p_value < RECIPE.alpha_level and run.test_examples >= 20
    # what it was compared with is the shared champion, segment by segment, on ODD's test split only
    evals = world.repo.evals(run.id)
    assert {e.adapter for e in evals if e.role == "champion"} == {f"shared/{world.shared}"}
    assert {e.institution for e in evals} == {"ODD"} and len({e.body_system for e in evals}) == 5
    assert world.repo.champions()["ODD"].version == world.odd.version
    assert read_spec(world.adapters / "ODD" / world.odd.version).template_family == "1"


def _degraded_copy(world: World, version: str) -> Path:
    """The ODD champion with its LoRA update scaled up tenfold and noised: a broken refit."""
    import torch
    from safetensors.torch import load_file, save_file

    source = world.adapters / "ODD" / world.odd.version
    target = world.adapters / "ODD" / version
    shutil.copytree(source, target)
    weights = load_file(target / "adapter_model.safetensors")
    torch.manual_seed(0)
    save_file({k: v * 10 + torch.randn_like(v) for k, v in weights.items()}, target / "adapter_model.safetensors")
    write_meta(target, "ODD", version, "1")
    world.repo.save(AdapterRow(name="ODD", version=version, path=str(target), template_family="1"))
    return target


def test_gate_refuses_a_degraded_adapter(world: World) -> None:
    refitter = Refitter(world.repo, world.model, world.adapters, RECIPE, progress=False)
    degraded = read_spec(_degraded_copy(world, "v0090"))
    run = world.repo.save(TrainingRunRow(name="ODD", trigger="manual", state="done"))
    test = refitter.dataset(time.time()).only("ODD").test
    decision = refitter.compare(run, test, degraded, refitter.champion_for("ODD"))
    assert not decision.promote and decision.delta < 0, decision.reason
    assert world.repo.champions()["ODD"].version == world.odd.version


def test_adapters_cli_promotes_and_rolls_back(world: World, broker, monkeypatch, capsys) -> None:
    for key, value in {"RADFLOW_DATABASE_URL": world.repo.url, "RADFLOW_ADAPTER_DIR": str(world.adapters),
                       "RADFLOW_MODEL_PATH": str(world.model), "RADFLOW_BROKER": f"kafka://{broker.bootstrap_servers}",
                       "RADFLOW_TOPIC_PREFIX": "cli"}.items():
        monkeypatch.setenv(key, value)
    _degraded_copy(world, "v0091")
    assert cli.main(["adapters", "promote", "ODD", "v0091"]) == 0
    assert world.repo.champions()["ODD"].version == "v0091"
    assert cli.main(["adapters", "rollback", "ODD"]) == 0
    assert world.repo.champions()["ODD"].version == world.odd.version
    assert cli.main(["adapters", "promote", "ODD", "v9999"]) == 2  # no such version: a clear error
    capsys.readouterr()
    assert cli.main(["adapters", "list"]) == 0
    rows = {tuple(line.split()[:3]) for line in capsys.readouterr().out.splitlines()[1:]}
    assert ("ODD", world.odd.version, "champion") in rows and ("ODD", "v0091", "rejected") in rows


def test_killed_refit_resumes_to_the_weights_of_an_uninterrupted_one(world: World, tmp_path: Path, broker) -> None:
    repo = Repository(f"sqlite:///{tmp_path / 'radflow.sqlite'}")
    _store(repo, generate_reports(60, seed=5, institutions=(ODD,)))
    recipe_file = tmp_path / "recipe.yaml"
    fields = {"templates": ["1"], "r": 8, "epochs": 2, "packing": False, "effective_batch": 8, "micro_batch": 8,
              "lr": 3e-3, "min_examples": 20, "min_segment": 10, "permutations": 200, "checkpoint_every": 2,
              "max_length": 320, "max_new_tokens": 32}
    recipe_file.write_text(json.dumps(fields))  # JSON is YAML
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RADFLOW_")},
           "RADFLOW_HOME": str(tmp_path / "home"), "RADFLOW_DATABASE_URL": repo.url,
           "RADFLOW_MODEL_PATH": str(world.model), "RADFLOW_ADAPTER_DIR": str(tmp_path / "adapters"),
           "RADFLOW_TRAIN_RECIPE": str(recipe_file), "RADFLOW_BROKER": f"kafka://{broker.bootstrap_servers}"}
    command = [sys.executable, "-m", "radflow", "train", "--adapter", "ODD"]
    with (tmp_path / "first.log").open("wb") as log:
        first = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    checkpoint = tmp_path / "adapters" / "ODD" / "runs" / "1" / "train" / CHECKPOINT
    wait_until(lambda: checkpoint.is_file() or first.poll() is not None, 120, "the first checkpoint")
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert checkpoint.is_file(), "the run ended before it could be killed"
    assert repo.runs("ODD")[0].state == "running"

    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout + second.stderr
    [run] = repo.runs("ODD")
    assert run.state == "done" and run.resumed_from >= 2 and run.steps > run.resumed_from
    assert not checkpoint.exists()

    # the same run without the kill ends with the same weights
    from safetensors.torch import load_file

    recipe = Recipe.load(recipe_file)
    refitter = Refitter(repo, world.model, tmp_path / "unused", recipe, progress=False)
    sub = refitter.dataset(run.window_end).only("ODD")
    clean = train_adapter(world.model, sub.train, recipe, "1", tmp_path / "clean", "ODD", "v0001",
                          tmp_path / "clean-work", fingerprint=sub.fingerprint(), progress=False)
    resumed = load_file(tmp_path / "adapters" / "ODD" / run.version / "adapter_model.safetensors")
    uninterrupted = load_file(clean.adapter.path / "adapter_model.safetensors")
    assert resumed.keys() == uninterrupted.keys()
    for key in resumed:
        assert (resumed[key] - uninterrupted[key]).abs().max().item() < 1e-5, key


async def test_draft_worker_hot_swaps_on_a_promotion(world: World, settings, start_worker, broker) -> None:
    settings = dataclasses.replace(settings, model_path=str(world.model),
                                   adapter_dir=str(settings.home / "adapters"))
    repo = Repository(settings.resolved_database_url)
    # ODD's adapter, registered for XIHE (same language), not yet the champion
    target = Path(settings.adapter_dir) / "XIHE" / "v0001"
    shutil.copytree(world.adapters / "ODD" / world.odd.version, target)
    write_meta(target, "XIHE", "v0001", "1")
    repo.save(AdapterRow(name="XIHE", version="v0001", path=str(target), template_family="1"))
    worker = start_worker(settings)
    names = TopicNames(settings.topic_prefix)
    service = await start_ingest("127.0.0.1", 0, names.ingest(), bootstrap_servers=broker.bootstrap_servers)
    xihe = [r for r in generate_reports(2, seed=21) if r.institution == "XIHE"]
    lake = next(r for r in generate_reports(1, seed=21) if r.institution == "LAKEVIEW")
    client = await MLLPClient.connect("127.0.0.1", service.server.port)
    try:
        async def send(report, n: int) -> None:
            assert ack_code(await client.send(to_hl7(report, "P", f"HS{n}", datetime(2026, 1, 5)))) == "AA"

        await send(xihe[0], 1)
        await wait_for(lambda: repo.get(DraftRow, "XIHE", xihe[0].accession) is not None, 60, "a draft by the base")
        assert repo.get(DraftRow, "XIHE", xihe[0].accession).adapter_version == ""

        Refitter(repo, world.model, Path(settings.adapter_dir), RECIPE,
                 publish=adapter_publisher(settings)).promote("XIHE", "v0001")
        await wait_for(lambda: worker.get("/api/stats")["adapter_swaps"] >= 1, 30, "the worker to swap")
        await send(xihe[1], 2)
        await send(lake, 3)
        await wait_for(lambda: repo.count(DraftRow) >= 3, 60, "drafts after the swap")
    finally:
        await client.close()
        await service.stop()
    assert repo.get(DraftRow, "XIHE", xihe[1].accession).adapter_version == "XIHE/v0001"
    assert repo.get(DraftRow, "LAKEVIEW", lake.accession).adapter_version == ""  # no shared champion here
