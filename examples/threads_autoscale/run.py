"""A real ``celery worker -P threads --autoscale=6,2`` fetching from a local HTTP server.

It shows, in order: the pool growing under a burst of fetches and shrinking back once
idle, the soft limit letting a download clean up after itself, the soft limit ending a
fetch stuck on a server that never answers, and the worker serving on afterwards.

Run: python examples/threads_autoscale/run.py
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

from local_server import local_server

from celery_timeouts.demo.workers import WorkerProcess, filesystem_broker_in, running_worker

HERE = Path(__file__).resolve().parent

MIN_THREADS, MAX_THREADS = 2, 6
# Idle seconds before the autoscaler shrinks the pool; Celery's default of 30 s would
# make the example wait that long.
KEEPALIVE = 2
BURST = 12
SLOW = 1.0  # seconds each fetch of the burst waits for the server
SAMPLE_EVERY = 0.2
WAIT = 20.0  # seconds any step may take before the example gives up on it


@dataclass
class Outcome:
    """A task's end as its result backend stored it."""

    state: str
    value: Any
    seconds: float  # from sending the task to its result being stored

    def describe(self) -> str:
        value = self.value
        if isinstance(value, BaseException):
            value = f"{type(value).__name__}({', '.join(map(repr, value.args))})"
        return f"{self.state} after {self.seconds:.1f} s: {value}"


class Session:
    """The client's side of one worker: sends tasks, reads outcomes, asks the pool's size."""

    def __init__(self, client: Any, worker: WorkerProcess) -> None:
        self.client = client
        self.worker = worker

    def send(self, name: str, *args: Any) -> tuple[Any, datetime]:
        return self.client.send_task(f"fetcher.{name}", args=list(args)), _now()

    def pool(self) -> dict[str, Any]:
        """``celery inspect stats`` for the pool: max-concurrency, threads, abandoned-...

        Asks up to three times: on the filesystem transport a reply is now and then late,
        or read before it is written. The client's messages are written whole (the
        broker's sender transport, celery_timeouts.demo.whole_messages), but the worker
        replies through kombu's stock transport, which creates the file under its final
        name and then writes it: reading it in between, kombu fails to decode it.
        """
        inspect = self.client.control.inspect(destination=[self.worker.name], timeout=1)
        for _ in range(3):
            try:
                stats = inspect.stats() or {}
            except ValueError:  # json.JSONDecodeError: a reply read before it was whole
                continue
            if self.worker.name in stats:
                pool: dict[str, Any] = stats[self.worker.name]["pool"]
                return pool
        raise RuntimeError(f"worker {self.worker.name} did not answer inspect stats")

    def size(self) -> int:
        return int(self.pool()["max-concurrency"])

    def wait(self, sent: Sequence[tuple[Any, datetime]]) -> tuple[list[Outcome], list[int]]:
        """Wait for every task, sampling the pool's size meanwhile; outcomes and sizes."""
        sizes = [self.size()]
        deadline = time.monotonic() + WAIT
        while not all(result.ready() for result, _ in sent):
            if time.monotonic() > deadline:
                raise RuntimeError(f"tasks not done within {WAIT} s:\n{self.worker.tail()}")
            time.sleep(SAMPLE_EVERY)
            sizes.append(self.size())
        return [outcome(result, at) for result, at in sent], sizes

    def wait_for_size(self, size: int) -> float:
        """Seconds until the pool is `size` threads (the autoscaler checks once a second)."""
        started = time.monotonic()
        while self.size() != size:
            if time.monotonic() - started > WAIT:
                raise RuntimeError(f"pool not back to {size} threads within {WAIT} s")
            time.sleep(SAMPLE_EVERY)
        return time.monotonic() - started


def _now() -> datetime:
    return datetime.now(timezone.utc)


def outcome(result: Any, sent: datetime) -> Outcome:
    result.get(timeout=WAIT, propagate=False)
    done = result.date_done
    if isinstance(done, str):
        done = datetime.fromisoformat(done)
    if done.tzinfo is None:
        done = done.replace(tzinfo=timezone.utc)
    return Outcome(result.state, result.result, (done - sent).total_seconds())


def tally(outcomes: Sequence[Outcome]) -> str:
    states = sorted({o.state for o in outcomes})
    counts = ", ".join(
        f"{sum(o.state == state for o in outcomes)} of {len(outcomes)} {state}" for state in states
    )
    return f"{counts}; last stored {max(o.seconds for o in outcomes):.2f} s after sending"


def burst(session: Session, base: str) -> None:
    print(f"1. burst: {BURST} fetches of /slow ({SLOW:g} s each) sent at once")
    sent = [session.send("fetch", f"{base}/slow?seconds={SLOW}") for _ in range(BURST)]
    outcomes, sizes = session.wait(sent)
    alone = BURST * SLOW / MIN_THREADS
    print(f"   {tally(outcomes)} ({MIN_THREADS} threads alone would need {alone:g} s)")
    seen = " ".join(str(size) for size in dict.fromkeys(sizes))
    print(f"   pool grew: {MIN_THREADS} -> {max(sizes)} threads (sizes seen: {seen})")
    waited = session.wait_for_size(MIN_THREADS)
    print(f"2. idle: pool shrank back to {session.size()} threads {waited:.1f} s after the burst "
          f"(keepalive {KEEPALIVE} s)")


def limits(session: Session, base: str, downloads: Path) -> None:
    print("3. time limits, two tasks at once:")
    download = session.send("download", f"{base}/stream", str(downloads))
    stuck = session.send("fetch", f"{base}/hang")
    (streamed, hung), _ = session.wait([download, stuck])
    print(f"   download /stream (endless; soft 1.5 s, hard 4 s): {streamed.describe()}")
    print(f"   fetch /hang (never answers; soft 2 s, hard 3 s): {hung.describe()}")
    left = sorted(path.name for path in downloads.iterdir())
    print(f"   files left in the download folder: {left or 'none'}")
    for line in session.worker.log_text().splitlines():
        if "stuck past its hard time limit" in line or "Hard time limit" in line:
            print(f"   worker log: {line.split('] ', 1)[-1]}")


def serving(session: Session, base: str) -> None:
    sent = [session.send("fetch", f"{base}/ok") for _ in range(4)]
    outcomes, _ = session.wait(sent)
    print(f"4. after the timeouts: 4 fetches of /ok: {tally(outcomes)}")
    pool = session.pool()
    print(f"   pool: {pool['threads']} threads running, abandoned threads so far: "
          f"{pool['abandoned-threads-total']}; worker alive: {session.worker.returncode is None}")


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
    folder = Path(tempfile.mkdtemp(prefix="threads-autoscale-"))
    worker: WorkerProcess | None = None
    try:
        with stop_on_sigterm(), contextlib.ExitStack() as stack:
            stack.callback(shutil.rmtree, folder, ignore_errors=True)
            base = stack.enter_context(local_server())
            broker = filesystem_broker_in(folder / "broker")
            worker = stack.enter_context(running_worker(
                "fetcher", "threads", broker, log_dir=folder, python_path=[HERE],
                extra_args=[f"--autoscale={MAX_THREADS},{MIN_THREADS}"],
                env={"AUTOSCALE_KEEPALIVE": str(KEEPALIVE)},
            ))
            client = broker.client_app()
            stack.callback(client.close)
            session = Session(client, worker)
            print(f"worker ready after {time.monotonic() - started:.1f} s (pid {worker.pid}): "
                  f"-P threads --autoscale={MAX_THREADS},{MIN_THREADS}, "
                  f"pool {session.size()} threads; server at {base}")
            downloads = folder / "downloads"
            downloads.mkdir()
            burst(session, base)
            limits(session, base, downloads)
            serving(session, base)
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
