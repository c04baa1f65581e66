"""`radflow demo`, `serve`, `ingest` and `worker`: the commands that run the pipeline's processes."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from kernel.settings import Settings


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    import dataclasses

    from radflow.demo import run_demo

    if args.model:
        settings = dataclasses.replace(settings, model_path=args.model)
    return run_demo(settings, per_segment=args.per_segment, wait=not args.no_wait)


#: A broker that dies this soon after its start, this many times in a row, is not restarted again.
BROKER_MIN_LIFE, BROKER_QUICK_DEATHS = 30.0, 3


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    """The stack until Ctrl-C. When the embedded broker dies (it keeps its topics in memory, so
    they die with it), the worker and listener are stopped and the whole stack started again: the
    journal sends on every acknowledged message that storage does not show done."""
    import dataclasses
    import time

    from radflow.interrupts import Interrupts
    from radflow.services import ensure_model

    interrupts = Interrupts().install()
    try:
        settings = dataclasses.replace(settings, model_path=str(ensure_model(settings)))
        quick_deaths = 0
        while True:
            started = time.monotonic()
            ended = _serve_once(settings, interrupts)
            if ended is None:
                return 0
            name, code = ended
            quick_deaths = quick_deaths + 1 if time.monotonic() - started < BROKER_MIN_LIFE else 0
            if name != "broker" or quick_deaths >= BROKER_QUICK_DEATHS:
                print(f"radflow: the {name} exited with code {code}; stopping (logs in {settings.home / 'logs'})",
                      file=sys.stderr, flush=True)
                return 1
            print(f"radflow: the embedded broker exited with code {code} and took its topics with it; starting "
                  "the stack again (the journal sends on what was acknowledged and is not yet done)", flush=True)
    except KeyboardInterrupt:  # "stopping ..." is printed by the signal handler
        return 0


def _serve_once(settings: Settings, interrupts: Any) -> tuple[str, int] | None:
    """Runs the stack until Ctrl-C (None) or until one of its processes exits: (which, its code)."""
    from radflow.interrupts import until_first_exit
    from radflow.services import start_listener, start_stack, wait_for_dashboard

    running = None
    try:
        running = start_stack(settings, settings.home / "logs")
        interrupts.kill_children = running.kill
        url = wait_for_dashboard(settings, running.worker)
        children = {"worker": running.worker, **({"broker": running.broker.process} if running.broker else {})}

        async def listen() -> tuple[str, int] | None:
            service = await start_listener(settings)
            print(f"MLLP on {settings.mllp_host}:{service.server.port}; dashboard {url}; Ctrl-C stops.", flush=True)
            try:
                _, ended = await interrupts.until_stopped(until_first_exit(children))
                return ended
            finally:
                await service.stop()  # the listener stops taking frames first; then the worker, the broker

        return asyncio.run(listen())
    finally:
        if running is not None:
            running.stop()


def cmd_ingest(settings: Settings, args: argparse.Namespace) -> int:
    from radflow.services import ensure_all_topics, start_listener

    async def listen() -> None:
        stop = _stop_on_signals()
        main = asyncio.current_task()
        started = False

        def end_start_up(_: object) -> None:  # a signal while topics are made or the producer connects
            if not started and main is not None:
                main.cancel()

        waiter = asyncio.ensure_future(stop.wait())
        waiter.add_done_callback(end_start_up)
        service = None
        try:
            await ensure_all_topics(settings)
            service = await start_listener(settings, args.port)
            started = True
            print(f"MLLP listener on {settings.mllp_host}:{service.server.port}", flush=True)
            if settings.ingest_metrics_port:
                port = await service.serve_metrics(settings.mllp_host, settings.ingest_metrics_port)
                print(f"metrics on http://{settings.mllp_host}:{port}/metrics", flush=True)
            # the event, not a cancelled task, ends the run: under load a cancellation that lands
            # while a start-up step completes can be swallowed (asyncio.wait_for on 3.11)
            await stop.wait()
        except asyncio.CancelledError:
            if not stop.is_set():
                raise
        finally:
            waiter.cancel()
            if service is not None:
                await service.stop()  # stops taking frames, then flushes the producer

    try:
        asyncio.run(listen())
    except KeyboardInterrupt:
        pass
    return 0


def _stop_on_signals() -> asyncio.Event:
    """SIGINT, SIGTERM and SIGHUP set the event; a second one exits at once, and says so."""
    import os
    import signal

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal() -> None:
        if stop.is_set():
            os.write(1, b"\nsecond signal: stopping at once\n")
            os._exit(130)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, on_signal)
    return stop


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from streams.worker import run_worker

    run_worker(settings)  # exits the process once the worker has stopped (Ctrl-C before: main returns 130)
    return 0



def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The demo, the whole stack, and each process of it on its own."""
    p = sub.add_parser("demo", help="embedded broker + worker + listener, replay a generated feed, show ROUGE")
    p.add_argument("--per-segment", type=int, default=6, help="reports per institution x body system")
    p.add_argument("--no-wait", action="store_true", help="exit after the table instead of serving the dashboard")
    p.add_argument("--model", help="a pulled model's name (pulled when missing) or a directory; overrides "
                                    "RADFLOW_MODEL_PATH")
    p.set_defaults(func=cmd_demo)
    sub.add_parser("serve", help="broker (if none configured) + listener + worker + dashboard").set_defaults(func=cmd_serve)
    p = sub.add_parser("ingest", help="the MLLP listener only")
    p.add_argument("--port", type=int, default=None, help="overrides RADFLOW_MLLP_PORT")
    p.set_defaults(func=cmd_ingest)
    sub.add_parser("worker", help="the Faust worker (draft and score agents, dashboard)").set_defaults(func=cmd_worker)
