"""A real ``celery worker -P gevent`` sending webhooks to local subscribers, some of which
never answer.

It shows the soft limit under gevent: `notify` gives up on the subscribers still silent
at 1.5 s, closes their connections and returns the deliveries it made, while dozens of
other calls run side by side in the same worker; then the worker serves on.

Run: python examples/gevent_webhooks/run.py
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from local_server import Subscribers, local_server

from celery_timeouts.demo.workers import WorkerProcess, filesystem_broker_in, running_worker

HERE = Path(__file__).resolve().parent
CONCURRENCY = 20
EVENTS = 10
STUCK_EVERY = 3  # events 2, 5, 8 also go to /hook/stuck
# Subscribers and how long each takes to answer: all within the soft limit of 1.5 s.
SUBSCRIBERS = {
    "crm": 0.05, "billing": 0.05, "mail": 0.1, "audit": 0.05,
    "search": 0.1, "stats": 0.05, "chat": 0.2, "warehouse": 0.5,
}
WAIT = 20.0  # seconds any step may take before the example gives up on it


@dataclass
class Outcome:
    """A task's end as its result backend stored it."""

    state: str
    value: Any
    seconds: float  # from sending the task to its result being stored


def outcome(result: Any, sent: datetime) -> Outcome:
    result.get(timeout=WAIT, propagate=False)
    done = result.date_done
    if isinstance(done, str):
        done = datetime.fromisoformat(done)
    if done.tzinfo is None:
        done = done.replace(tzinfo=timezone.utc)
    return Outcome(result.state, result.result, (done - sent).total_seconds())


def urls_for(base: str, event: int, names: Sequence[str] = tuple(SUBSCRIBERS)) -> list[str]:
    urls = [f"{base}/hook/{name}?delay={SUBSCRIBERS[name]:g}" for name in names]
    if event % STUCK_EVERY == STUCK_EVERY - 1:
        urls.append(f"{base}/hook/stuck")
    return urls


def notify_all(client: Any, events: Sequence[tuple[int, list[str]]]) -> list[Outcome]:
    """Send one `notify` per event, all at once; their outcomes, in order."""
    sent = [
        (client.send_task("webhooks.notify", args=[{"id": event, "type": "order.paid"}, urls]),
         datetime.now(timezone.utc))
        for event, urls in events
    ]
    return [outcome(result, at) for result, at in sent]


def describe(event: int, got: Outcome) -> str:
    if not isinstance(got.value, dict):
        return f"   event {event}: {got.state} after {got.seconds:.2f} s: {got.value!r}"
    report = got.value
    total = len(report["delivered"]) + len(report["failed"]) + len(report["gave_up"])
    line = f"   event {event}: {got.state} after {got.seconds:.2f} s: "
    line += f"delivered {len(report['delivered'])} of {total}"
    if report["gave_up"]:
        line += f"; gave up on {', '.join(report['gave_up'])}"
    if report["failed"]:
        line += f"; failed: {report['failed']}"
    return line


def burst(client: Any, subscribers: Subscribers, worker: WorkerProcess) -> None:
    base = subscribers.base_url
    events = [(event, urls_for(base, event)) for event in range(EVENTS)]
    calls = sum(len(urls) for _, urls in events)
    print(f"1. {EVENTS} events, each POSTed to its subscribers at once ({calls} calls); "
          f"every {STUCK_EVERY}rd also goes to /hook/stuck, which never answers")
    outcomes = notify_all(client, events)
    for (event, _), got in zip(events, outcomes, strict=True):
        print(describe(event, got))
    # One task at a time, each waits for its slowest subscriber, or for its soft limit.
    with_stuck = sum(1 for _, urls in events if urls[-1].endswith("/hook/stuck"))
    one_by_one = (EVENTS - with_stuck) * max(SUBSCRIBERS.values()) + with_stuck * 1.5
    print(f"   all {EVENTS} stored within {max(o.seconds for o in outcomes):.2f} s of sending "
          f"(one event at a time: at least {one_by_one:g} s)")
    for line in worker.log_text().splitlines():
        if "gave up on webhook" in line:
            print(f"   worker log: {line.split('] ', 1)[-1]}")
    stuck = subscribers.received("stuck")
    closed = [call.hung_up_after for call in stuck if call.hung_up_after is not None]
    after = ", ".join(f"{seconds:.2f}" for seconds in closed) or "-"
    print(f"   subscriber /hook/stuck: {len(stuck)} calls, {len(closed)} closed by the worker, "
          f"{after} s after they arrived")


def serving(client: Any, subscribers: Subscribers) -> None:
    base = subscribers.base_url
    fast = [name for name, delay in SUBSCRIBERS.items() if delay < 0.5]
    events = [(event, urls_for(base, 0, fast)) for event in range(EVENTS, EVENTS + 5)]
    outcomes = notify_all(client, events)
    delivered = sum(len(o.value["delivered"]) for o in outcomes if isinstance(o.value, dict))
    states = sorted({o.state for o in outcomes})
    counts = ", ".join(
        f"{sum(o.state == state for o in outcomes)} of {len(outcomes)} {state}" for state in states
    )
    print(f"2. after the timeouts: {len(events)} more events: {counts}, "
          f"delivered {delivered} of {len(events) * len(fast)}")


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so the worker is stopped and the files removed."""

    def leave(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous: Callable[..., Any] | int | None = signal.signal(signal.SIGTERM, leave)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main() -> int:
    started = time.monotonic()
    folder = Path(tempfile.mkdtemp(prefix="gevent-webhooks-"))
    worker: WorkerProcess | None = None
    try:
        with stop_on_sigterm(), contextlib.ExitStack() as stack:
            stack.callback(shutil.rmtree, folder, ignore_errors=True)
            subscribers = stack.enter_context(local_server())
            broker = filesystem_broker_in(folder / "broker")
            worker = stack.enter_context(running_worker(
                "webhooks", "gevent", broker, log_dir=folder, python_path=[HERE],
                concurrency=CONCURRENCY,
            ))
            client = broker.client_app()
            stack.callback(client.close)
            print(f"worker ready after {time.monotonic() - started:.1f} s (pid {worker.pid}): "
                  f"-P gevent -c {CONCURRENCY}; subscribers at {subscribers.base_url}")
            burst(client, subscribers, worker)
            serving(client, subscribers)
            print(f"   worker alive: {worker.returncode is None}")
    except KeyboardInterrupt:
        print("interrupted")
        return 130
    except Exception:
        if worker is not None:
            print(f"worker log, last lines:\n{worker.tail()}", file=sys.stderr)
        raise
    finally:
        if worker is not None:
            print(f"worker pid {worker.pid} stopped: {worker.returncode is not None}; "
                  f"temporary folder removed: {not folder.exists()}")
    print(f"total {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
