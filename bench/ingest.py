"""Ingest benchmark.

1. Parse + map + clean per core: radflow's reader against hl7apy (the validating reference), on
   generated ORU^R01 messages and, when ../shared/corpora is present, on the public ORU samples.
2. End to end: `radflow ingest` as its own process on the embedded broker; N senders, each on its
   own MLLP connection, send generated ORU^R01. With the journal (the default) an ACK means the
   message is fsync'd in the journal, and "into broker" is the rate at which the forwarder had
   produced all of them (read from the listener's /metrics); with `--journal off` an ACK means
   the broker acknowledged the produce. Reports messages/s and ACK latency percentiles.

Usage: python bench/ingest.py [--messages 3000] [--senders 1,8,32,64] [--journal on,off]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ingest.hl7 import parse  # noqa: E402
from ingest.mllp import MLLPClient, ack_code  # noqa: E402
from ingest.reports import to_report_event  # noqa: E402
from kernel.broker import EmbeddedBroker  # noqa: E402
from radflow.demodata import feed, generate_reports  # noqa: E402
from tests.conftest import free_port  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpora" / "hl7"


def corpus_oru() -> list[bytes]:
    out = []
    for path in sorted(CORPUS.rglob("*")) if CORPUS.is_dir() else []:
        if path.is_file() and path.suffix not in (".md", ".json"):
            raw = path.read_bytes()
            try:
                msg = parse(raw)
                if msg.message_type[0] == "ORU" and msg.segment("OBR"):
                    to_report_event(msg)
                    out.append(raw)
            except Exception:
                continue
    return out


def time_per_message(fn, messages: list[bytes], min_seconds: float = 2.0) -> list[float]:
    """Seconds per message, over as many passes as fit in ``min_seconds``."""
    samples: list[float] = []
    started = time.perf_counter()
    while time.perf_counter() - started < min_seconds or not samples:
        for m in messages:
            t = time.perf_counter()
            fn(m)
            samples.append(time.perf_counter() - t)
    return samples


def radflow_parse(raw: bytes) -> None:
    to_report_event(parse(raw))


def hl7apy_parse(raw: bytes) -> None:
    from hl7apy.parser import parse_message

    text = raw.decode("utf-8", "replace").replace("\n", "\r")
    parse_message(text, find_groups=True)


def parse_table() -> None:
    demo = [i.message for i in feed(generate_reports(2, seed=5)) if i.status == "F"]
    sets = [("generated ORU^R01", demo)]
    public = corpus_oru()
    if public:
        sets.append((f"public ORU^R01 ({len(public)})", public))
    print("\n## Parse + map + clean, one core\n")
    print("| messages | parser | msg/s | median ms | p95 ms |\n|---|---|---:|---:|---:|")
    for name, messages in sets:
        rates = {}
        for label, fn in (("radflow reader", radflow_parse), ("hl7apy", hl7apy_parse)):
            ok = []
            for m in messages:
                try:
                    fn(m)
                    ok.append(m)
                except Exception:
                    pass
            s = sorted(time_per_message(fn, ok))
            rates[label] = len(s) / sum(s)
            p95 = percentile(s, 0.95)
            print(f"| {name} | {label} | {rates[label]:,.0f} | {statistics.median(s) * 1000:.3f} | {p95 * 1000:.3f} |")
        print(f"| {name} | **ratio** | **{rates['radflow reader'] / rates['hl7apy']:.0f}x** | | |")


async def _sender(port: int, messages: list[bytes], latencies: list[float], codes: dict[str, int]) -> None:
    client = await MLLPClient.connect("127.0.0.1", port)
    try:
        for m in messages:
            t = time.perf_counter()
            code = ack_code(await client.send(m))
            latencies.append(time.perf_counter() - t)
            codes[code] = codes.get(code, 0) + 1
    finally:
        await client.close()


async def _run_senders(port: int, messages: list[bytes], senders: int) -> tuple[float, list[float], dict[str, int]]:
    shares = [messages[i::senders] for i in range(senders)]
    latencies: list[float] = []
    codes: dict[str, int] = {}
    started = time.perf_counter()
    await asyncio.gather(*(_sender(port, share, latencies, codes) for share in shares))
    return time.perf_counter() - started, latencies, codes


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


def produced(metrics_port: int) -> int:
    """Journal entries the listener's forwarder has produced (its /metrics)."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith('radflow_ingest_forwarded_total{step="produced"}'):
                return int(float(line.split()[-1]))
    return 0


def _one_row(broker: EmbeddedBroker, home: str, base: list[bytes], total: int, senders: int,
             journal: bool) -> tuple[float, float, list[float], dict[str, int]]:
    port, metrics_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RADFLOW_")}
    env.update(RADFLOW_BROKER=f"kafka://{broker.bootstrap_servers}", RADFLOW_TOPIC_PREFIX=f"b{uuid.uuid4().hex[:6]}",
               RADFLOW_HOME=home, RADFLOW_LOG_LEVEL="WARNING", RADFLOW_INGEST_METRICS_PORT=str(metrics_port),
               RADFLOW_JOURNAL_PATH=str(Path(home) / f"journal-{port}.sqlite") if journal else "off")
    proc = subprocess.Popen([sys.executable, "-m", "radflow", "ingest", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    proc.stdout.readline()  # "MLLP listener on ..."
    # unique control ids per row, so duplicate suppression does not short-cut the produce
    messages = [m.replace(b"|P|2.5.1", f"{n}|P|2.5.1".encode(), 1) for n, m in
                enumerate((base * (total // len(base) + 1))[:total])]
    try:
        warm = messages[: min(200, total)]
        asyncio.run(_run_senders(port, [m.replace(b"|P|2.5.1", b"w|P|2.5.1", 1) for m in warm], senders))
        while journal and produced(metrics_port) < len(warm):
            time.sleep(0.05)
        started = time.perf_counter()
        elapsed, lat, codes = asyncio.run(_run_senders(port, messages, senders))
        into_broker = elapsed
        while journal and produced(metrics_port) < len(warm) + total:
            time.sleep(0.01)
            into_broker = time.perf_counter() - started
    finally:
        proc.terminate()
        proc.wait(10)
    return elapsed, into_broker, sorted(lat), codes


def end_to_end_table(total: int, sender_counts: list[int], journals: list[bool]) -> None:
    reports = generate_reports(max(1, total // 30 + 1), seed=9)
    base = [i.message for i in feed(reports, seed=9)]
    print(f"\n## End to end: MLLP in → ACK → broker ({total} messages a row; load {os.getloadavg()[0]:.1f})\n")
    print("| journal | senders | ACK msg/s | into broker msg/s | ACK p50 ms | ACK p95 ms | ACK p99 ms | codes |\n"
          "|---|---:|---:|---:|---:|---:|---:|---|")
    with EmbeddedBroker(free_port()) as broker, tempfile.TemporaryDirectory() as home:
        best: dict[bool, float] = {}
        for senders in sender_counts:
            for journal in journals:
                elapsed, into_broker, lat, codes = _one_row(broker, home, base, total, senders, journal)
                rate, forwarded = len(lat) / elapsed, len(lat) / into_broker
                best[journal] = max(best.get(journal, 0.0), min(rate, forwarded))
                p50, p95, p99 = (percentile(lat, q) * 1000 for q in (0.5, 0.95, 0.99))
                print(f"| {'on' if journal else 'off'} | {senders} | {rate:,.0f} | {forwarded:,.0f} | {p50:.1f} | "
                      f"{p95:.1f} | {p99:.1f} | " + ", ".join(f"{c} {n}" for c, n in sorted(codes.items())) + " |")
        for journal, rate in best.items():
            print(f"\njournal {'on' if journal else 'off'}: best {rate:,.0f} msg/s end to end (the lower of ACK and "
                  f"into-broker rates); target 1,000 msg/s: ratio {rate / 1000:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--senders", default="1,8,32,64")
    parser.add_argument("--skip-parse", action="store_true")
    parser.add_argument("--journal", default="on,off", help="rows with the journal on, off, or both")
    args = parser.parse_args()
    print(f"# ingest benchmark ({os.cpu_count()} cores, Python {sys.version.split()[0]})")
    if not args.skip_parse:
        parse_table()
    end_to_end_table(args.messages, [int(s) for s in args.senders.split(",")],
                     [j.strip() == "on" for j in args.journal.split(",")])


if __name__ == "__main__":
    main()
