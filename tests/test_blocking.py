"""celery_timeouts.blocking: blocking calls in worker threads end at the scope's deadline.

Every call blocks on something real (a socket on 127.0.0.1, a child process, a queue
nobody fills) and a 0.3 s scope must end it with the scope's own exception. Bounds are
loose (BOUND, seconds, not the 30 s the calls would block) for a loaded 2-core machine.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import queue
import select
import selectors
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import traceback
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from celery_timeouts import TaskTimeout, blocking, portable_timeout
from celery_timeouts.backends import get_backend

from conftest import run_python

LIMIT = 0.3
BOUND = 5.0  # a 0.3 s scope around a wait of 30 s or forever: anything under 5 s is it
FOREVER = 30


class Outer(TaskTimeout):
    pass


class Soft(TaskTimeout):
    """Stands for Celery's SoftTimeLimitExceeded: raised in the body, the task catches it."""


@pytest.fixture(autouse=True)
def _patched() -> Iterator[None]:
    with blocking.patched():
        yield


@pytest.fixture
def cleanup() -> Iterator[Callable[[Callable[[], object]], None]]:
    """Register undo actions (close a socket, set an event, kill a child), run at the end."""
    actions: list[Callable[[], object]] = []
    yield actions.append
    for action in reversed(actions):
        with contextlib.suppress(Exception):
            action()


def in_thread(body: Callable[[], Any], timeout: float = 60) -> tuple[Any, float]:
    """Run `body` in a fresh worker thread: (its result or the exception it raised, seconds)."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        started = time.monotonic()
        try:
            outcome["value"] = body()
        except BaseException as error:  # the outcome under test
            outcome["value"] = error
        outcome["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "the worker thread is still blocked"
    return outcome["value"], outcome["seconds"]


def limited(
    call: Callable[[], object], seconds: float = LIMIT, **options: Any
) -> Callable[[], Any]:
    def body() -> Any:
        with portable_timeout(seconds, **options):
            return call()

    return body


# -- what blocks -------------------------------------------------------------------------------


@pytest.fixture
def pair(cleanup: Callable[[Callable[[], object]], None]) -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    cleanup(a.close)
    cleanup(b.close)
    return a, b


@pytest.fixture
def silent_server(cleanup: Callable[[Callable[[], object]], None]) -> tuple[str, int]:
    """A TCP server on 127.0.0.1 that accepts connections and never answers."""
    server = socket.create_server(("127.0.0.1", 0))
    cleanup(server.close)
    accepted: list[socket.socket] = []
    cleanup(lambda: [conn.close() for conn in accepted])

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                accepted.append(server.accept()[0])

    serving = threading.Thread(target=serve, daemon=True)
    serving.start()
    cleanup(lambda: serving.join(10))
    cleanup(lambda: _wake_accept(server))  # runs first: a close alone leaves accept() waiting
    return server.getsockname()[:2]


def _wake_accept(server: socket.socket) -> None:
    with contextlib.suppress(OSError):
        server.shutdown(socket.SHUT_RDWR)


def filled(sock: socket.socket) -> socket.socket:
    """`sock` with its send buffer full: the next blocking send waits."""
    sock.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        while True:
            sock.send(b"x" * 65536)
    sock.setblocking(True)
    return sock


def _blocked_calls(
    request: pytest.FixtureRequest, cleanup: Callable[[Callable[[], object]], None]
) -> dict[str, Callable[[], object]]:
    a, _ = request.getfixturevalue("pair")

    def child(*command: str) -> list[str]:
        return list(command)

    never = concurrent.futures.Future()  # type: ignore[var-annotated]
    cleanup(lambda: never.set_result(None))
    release = threading.Event()
    waiter = threading.Thread(target=release.wait)
    waiter.start()
    cleanup(waiter.join)
    cleanup(release.set)  # (cleanups run in reverse order)
    full_queue: queue.Queue[int] = queue.Queue(1)
    full_queue.put(1)
    condition = threading.Condition()

    def wait_on_condition() -> None:
        with condition:
            condition.wait()

    def wait_for_nothing() -> None:
        with condition:
            condition.wait_for(lambda: False)

    def popen_wait() -> None:
        process = subprocess.Popen(child("sleep", str(FOREVER)))
        cleanup(process.kill)
        process.wait()

    def communicate() -> None:
        process = subprocess.Popen(child("sleep", str(FOREVER)), stdout=subprocess.PIPE)
        cleanup(process.kill)
        process.communicate()

    def sendto() -> None:
        # A datagram receiver whose queue is full: the next blocking sendto waits.
        receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        cleanup(receiver.close)
        receiver.bind(f"\0celery-timeouts-test-{os.getpid()}-{id(receiver)}")
        sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        cleanup(sender.close)
        sender.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while True:
                sender.sendto(b"x", receiver.getsockname())
        sender.setblocking(True)
        sender.sendto(b"x", receiver.getsockname())

    def poll() -> None:
        poller = select.poll()
        poller.register(a, select.POLLIN)
        poller.poll()

    def epoll() -> None:
        with select.epoll() as poller:
            poller.register(a.fileno(), select.EPOLLIN)
            poller.poll()

    def selector() -> None:
        with selectors.DefaultSelector() as chosen:
            chosen.register(a, selectors.EVENT_READ)
            chosen.select()

    return {
        "time.sleep": lambda: time.sleep(FOREVER),
        "socket.recv": lambda: a.recv(1),
        "socket.recv_into": lambda: a.recv_into(bytearray(1)),
        "socket.recvfrom": lambda: a.recvfrom(1),
        "socket.recvfrom_into": lambda: a.recvfrom_into(bytearray(1)),
        "socket.send": lambda: filled(a).send(b"x" * 65536),
        "socket.sendall": lambda: filled(a).sendall(b"x" * 65536),
        "socket.sendto": sendto,
        "makefile readline": lambda: a.makefile("rb").readline(),
        "select.select": lambda: select.select([a], [], []),
        "select.poll": poll,
        "select.epoll": epoll,
        "selectors.DefaultSelector": selector,
        "Event.wait": lambda: threading.Event().wait(),
        "Condition.wait": wait_on_condition,
        "Condition.wait_for": wait_for_nothing,
        "Semaphore.acquire": lambda: threading.Semaphore(0).acquire(),
        "Barrier.wait": lambda: threading.Barrier(2).wait(),
        "Thread.join": waiter.join,
        "Queue.get": lambda: queue.Queue().get(),
        "LifoQueue.get": lambda: queue.LifoQueue().get(),
        "PriorityQueue.get": lambda: queue.PriorityQueue().get(),
        "Queue.put": lambda: full_queue.put(2),
        "Future.result": never.result,
        "Future.exception": never.exception,
        "futures.wait": lambda: concurrent.futures.wait([never]),
        "futures.as_completed": lambda: list(concurrent.futures.as_completed([never])),
        "Popen.wait": popen_wait,
        "Popen.communicate": communicate,
        "subprocess.run": lambda: subprocess.run(child("sleep", str(FOREVER))),
        "subprocess.call": lambda: subprocess.call(child("sleep", str(FOREVER))),
        "subprocess.check_call": lambda: subprocess.check_call(child("sleep", str(FOREVER))),
        "subprocess.check_output": lambda: subprocess.check_output(
            child("sleep", str(FOREVER))
        ),
    }


BLOCKED_CALLS = [
    "time.sleep", "socket.recv", "socket.recv_into", "socket.recvfrom",
    "socket.recvfrom_into", "socket.send", "socket.sendall", "socket.sendto",
    "makefile readline",
    "select.select", "select.poll", "select.epoll", "selectors.DefaultSelector",
    "Event.wait", "Condition.wait", "Condition.wait_for", "Semaphore.acquire",
    "Barrier.wait", "Thread.join", "Queue.get", "LifoQueue.get", "PriorityQueue.get",
    "Queue.put", "Future.result", "Future.exception", "futures.wait",
    "futures.as_completed", "Popen.wait", "Popen.communicate", "subprocess.run",
    "subprocess.call", "subprocess.check_call", "subprocess.check_output",
]


@pytest.mark.parametrize("name", BLOCKED_CALLS)
def test_blocked_call_ends_at_the_deadline(
    name: str, request: pytest.FixtureRequest, cleanup: Callable[[Callable[[], object]], None]
) -> None:
    call = _blocked_calls(request, cleanup)[name]
    raised, seconds = in_thread(limited(call))
    assert isinstance(raised, TaskTimeout), raised
    assert type(raised) is TaskTimeout
    assert seconds + 0.01 >= LIMIT and seconds < BOUND
    # Raised by the patched wait itself, at its deadline: the watchdog never injects
    # into a wait (it could land in the wait's own code and lose what it returned).
    innermost = traceback.extract_tb(raised.__traceback__)[-1]
    assert innermost.name == "expire", traceback.format_tb(raised.__traceback__)[-3:]


def test_socket_calls_to_a_silent_server_end_at_the_deadline(
    silent_server: tuple[str, int], cleanup: Callable[[Callable[[], object]], None]
) -> None:
    host, port = silent_server

    def connect_and_read() -> bytes:
        conn = socket.create_connection((host, port))
        cleanup(conn.close)
        return conn.recv(1)

    def tls_handshake() -> None:
        conn = socket.create_connection((host, port))
        cleanup(conn.close)
        ssl.create_default_context().wrap_socket(conn, server_hostname="localhost")

    def http_get() -> None:
        urllib.request.urlopen(f"http://{host}:{port}/")

    for body in (connect_and_read, tls_handshake, http_get):
        raised, seconds = in_thread(limited(body))
        assert isinstance(raised, TaskTimeout), (body.__name__, raised)
        assert seconds < BOUND, body.__name__


def test_accept_and_connect_end_at_the_deadline(
    cleanup: Callable[[Callable[[], object]], None]
) -> None:
    server = socket.create_server(("127.0.0.1", 0), backlog=0)
    cleanup(server.close)
    raised, seconds = in_thread(limited(server.accept))
    assert isinstance(raised, TaskTimeout) and seconds < BOUND, raised
    # Fill the accept queue, nobody accepting: a further connect waits for a SYN-ACK.
    clients = []
    for _ in range(8):
        client = socket.socket()
        cleanup(client.close)
        client.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            client.connect(server.getsockname())
        clients.append(client)
    late = socket.socket()
    cleanup(late.close)
    raised, seconds = in_thread(limited(lambda: late.connect(server.getsockname())))
    assert isinstance(raised, TaskTimeout) and seconds < BOUND, raised


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_tls_read_from_a_silent_server_ends_at_the_deadline(
    tmp_path: Path, cleanup: Callable[[Callable[[], object]], None]
) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    server = socket.create_server(("127.0.0.1", 0))
    cleanup(server.close)

    def serve() -> None:  # handshakes, then says nothing
        with contextlib.suppress(OSError):
            conn = server_context.wrap_socket(server.accept()[0], server_side=True)
            cleanup(conn.close)

    threading.Thread(target=serve, daemon=True).start()
    client_context = ssl.create_default_context(cafile=str(cert))

    def read() -> bytes:
        conn = client_context.wrap_socket(
            socket.create_connection(server.getsockname()), server_hostname="localhost"
        )
        cleanup(conn.close)
        return conn.recv(1)

    raised, seconds = in_thread(limited(read))
    assert isinstance(raised, TaskTimeout) and seconds < BOUND, raised


# -- the deadline, the caller's timeouts and what comes back ---------------------------------


def test_calls_that_complete_in_time_return_their_results(
    pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair
    items: queue.Queue[str] = queue.Queue()
    ready = threading.Event()

    def later() -> None:
        time.sleep(0.1)
        b.sendall(b"data")
        items.put("item")
        ready.set()

    def body() -> tuple[bytes, str, bool, bytes, int]:
        threading.Thread(target=later).start()
        with portable_timeout(BOUND * 2):
            waited = a.recv(4), items.get(), ready.wait()
            b.sendall(b"there already")  # taken at once (MSG_DONTWAIT), flags kept
            peeked = a.recv(5, socket.MSG_PEEK)
            buffer = bytearray(8)
            return (*waited, peeked + a.recv(6), a.recv_into(buffer, 0, 0) + len(buffer))

    assert in_thread(body)[0] == (b"data", "item", True, b"therethere ", 7 + 8)


def test_outside_any_scope_calls_are_stock(pair: tuple[socket.socket, socket.socket]) -> None:
    a, _ = pair

    def body() -> list[str]:
        seen = []
        a.settimeout(0.1)
        try:
            a.recv(1)
        except TimeoutError:
            seen.append("socket.timeout")
        try:
            queue.Queue().get(timeout=0.1)
        except queue.Empty:
            seen.append("queue.Empty")
        seen.append(f"event {threading.Event().wait(0.1)}")
        time.sleep(0.05)
        return seen

    assert in_thread(body)[0] == ["socket.timeout", "queue.Empty", "event False"]


def test_a_shorter_own_timeout_wins(pair: tuple[socket.socket, socket.socket]) -> None:
    a, _ = pair

    def body() -> list[str]:
        seen = []
        with portable_timeout(BOUND * 2):
            a.settimeout(0.1)
            try:
                a.recv(1)
            except TimeoutError as error:
                seen.append(f"socket.timeout {error}")
            seen.append(f"timeout kept {a.gettimeout()}")
            try:
                queue.Queue().get(timeout=0.1)
            except queue.Empty:
                seen.append("queue.Empty")
            process = subprocess.Popen(["sleep", str(FOREVER)])
            try:
                process.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                seen.append("TimeoutExpired")
            finally:
                process.kill()
                process.wait()
        return seen

    raised = in_thread(body)[0]
    assert raised == [
        "socket.timeout timed out", "timeout kept 0.1", "queue.Empty", "TimeoutExpired",
    ]


def test_a_longer_own_timeout_ends_at_the_deadline_and_stays_set(
    pair: tuple[socket.socket, socket.socket]
) -> None:
    # What HTTP and database clients do: a read timeout longer than the limit. CPython
    # polls for the socket's timeout before its first recv, so the deadline must bound
    # that poll too (the demo's silent-server task).
    a, _ = pair
    a.settimeout(FOREVER)
    for call in (lambda: a.recv(1), lambda: a.recv_into(bytearray(1)), lambda: a.recvfrom(1)):
        raised, seconds = in_thread(limited(call))
        assert isinstance(raised, TaskTimeout), raised
        assert seconds + 0.01 >= LIMIT and seconds < BOUND, seconds
        assert a.gettimeout() == FOREVER


def test_a_blocking_socket_is_blocking_again(pair: tuple[socket.socket, socket.socket]) -> None:
    a, _ = pair
    raised, _ = in_thread(limited(lambda: a.recv(1)))
    assert isinstance(raised, TaskTimeout)
    assert a.gettimeout() is None
    assert os.get_blocking(a.fileno())


def test_nested_scopes_the_earliest_deadline_raises() -> None:
    def outer_first() -> None:
        with portable_timeout(LIMIT, exception=Outer), portable_timeout(FOREVER):
            time.sleep(FOREVER)

    def inner_first() -> None:
        with portable_timeout(FOREVER, exception=Outer), portable_timeout(LIMIT):
            queue.Queue().get()

    raised, seconds = in_thread(outer_first)
    assert type(raised) is Outer and seconds < BOUND
    raised, seconds = in_thread(inner_first)
    assert type(raised) is TaskTimeout and seconds < BOUND


def test_a_catchable_timeout_is_raised_in_the_body_once() -> None:
    """The task catches it at the blocking call, then cleans up: its further waits are
    not cut by the same deadline, and nothing is delivered a second time."""

    def body() -> list[str]:
        seen = []
        with portable_timeout(LIMIT, exception=Soft, catchable=True) as scope:
            try:
                threading.Event().wait()
            except Soft:
                seen.append("caught Soft")
            time.sleep(0.2)  # cleanup that blocks: not interrupted
            seen.append("slept")
            spin_until = time.monotonic() + 0.2  # a second injection would land here
            while time.monotonic() < spin_until:
                pass
            seen.append(f"fired {scope.fired}")
        return seen

    assert in_thread(body)[0] == ["caught Soft", "slept", "fired True"]
    watchdog: Any = get_backend("thread")
    assert not watchdog._pending


def test_celery_soft_limit_is_catchable_at_a_blocking_call() -> None:
    from celery.exceptions import SoftTimeLimitExceeded

    def body() -> str:
        with portable_timeout(LIMIT, exception=SoftTimeLimitExceeded, catchable=True):
            try:
                time.sleep(FOREVER)
            except SoftTimeLimitExceeded:
                return "cleaned up"
        return "not interrupted"

    result, seconds = in_thread(body)
    assert result == "cleaned up" and seconds < BOUND


# -- child processes ----------------------------------------------------------------------------


def test_a_hard_timeout_kills_the_children_the_body_started(
    cleanup: Callable[[Callable[[], object]], None]
) -> None:
    started: list[subprocess.Popen[bytes]] = []

    def body() -> None:
        with portable_timeout(LIMIT):
            process = subprocess.Popen(["sleep", str(FOREVER)])
            cleanup(process.kill)
            started.append(process)
            time.sleep(FOREVER)  # not waiting for the child: killed at the scope's exit

    def with_popen() -> None:
        with portable_timeout(LIMIT), subprocess.Popen(["sleep", str(FOREVER)]) as process:
            cleanup(process.kill)
            started.append(process)
            process.wait()  # its exit waits again: the child is killed, not waited for

    for run in (body, with_popen):
        raised, seconds = in_thread(run)
        assert type(raised) is TaskTimeout and seconds < BOUND, raised
        assert started[-1].wait(timeout=BOUND) == -9


def test_a_catchable_timeout_leaves_the_children_to_the_task(
    cleanup: Callable[[Callable[[], object]], None]
) -> None:
    def body() -> subprocess.Popen[bytes]:
        with portable_timeout(LIMIT, exception=Soft, catchable=True):
            process = subprocess.Popen(["sleep", str(FOREVER)])
            cleanup(process.kill)
            try:
                process.wait()
            except Soft:
                return process
        raise AssertionError("not interrupted")

    process, seconds = in_thread(body)
    assert seconds < BOUND
    time.sleep(0.2)
    assert process.poll() is None  # still running


def test_an_outer_hard_timeout_kills_what_an_inner_scope_started(
    cleanup: Callable[[Callable[[], object]], None]
) -> None:
    started: list[subprocess.Popen[bytes]] = []

    def body() -> None:
        with portable_timeout(LIMIT):
            with portable_timeout(FOREVER):
                process = subprocess.Popen(["sleep", str(FOREVER)])
                cleanup(process.kill)
                started.append(process)
            time.sleep(FOREVER)

    raised, _ = in_thread(body)
    assert type(raised) is TaskTimeout
    assert started[0].wait(timeout=BOUND) == -9


# -- where nothing changes -----------------------------------------------------------------------


def test_patch_and_unpatch_restore_the_very_same_objects() -> None:
    import _socket

    originals = {
        "sleep": time.sleep, "wait": threading.Condition.wait, "join": threading.Thread.join,
        "select": select.select, "poll": select.poll, "epoll": select.epoll,
        "accept": socket.socket.accept, "ssl_recv": ssl.SSLSocket.recv,
        "popen_wait": subprocess.Popen.wait, "popen_init": subprocess.Popen.__init__,
        "epoll_selector": selectors.EpollSelector.select,
    }
    blocking.unpatch()
    assert not blocking.is_patched()
    unpatched = {
        "sleep": time.sleep, "wait": threading.Condition.wait, "join": threading.Thread.join,
        "select": select.select, "poll": select.poll, "epoll": select.epoll,
    }
    assert all(originals[name] is not unpatched[name] for name in unpatched)
    assert socket.socket.recv is _socket.socket.recv and "recv" not in vars(socket.socket)
    assert "select" not in vars(selectors.PollSelector)
    with blocking.patched():
        assert blocking.is_patched()
        with blocking.patched():  # nested: leaves the patch on
            pass
        assert blocking.is_patched()
        assert time.sleep is originals["sleep"] and ssl.SSLSocket.recv is originals["ssl_recv"]
    assert time.sleep is unpatched["sleep"] and select.epoll is unpatched["epoll"]
    assert "__init__" in vars(subprocess.Popen)
    assert subprocess.Popen.__init__ is not originals["popen_init"]
    assert not blocking.is_patched()
    blocking.patch()
    blocking.patch()  # again: no double wrapping
    assert time.sleep is originals["sleep"]
    assert selectors.EpollSelector.select is originals["epoll_selector"]


def test_the_main_thread_is_left_as_it_was() -> None:
    # Only SIGALRM reaches a main thread blocked in C; a thread-backend scope there
    # waits for the call to return, patched or not.
    started = time.monotonic()
    with pytest.raises(TaskTimeout), portable_timeout(0.1, backend="thread"):
        time.sleep(0.6)
    assert time.monotonic() - started >= 0.6


def test_greenlets_are_left_to_their_hub() -> None:
    code = """
from gevent import monkey; monkey.patch_all()
import json, time, gevent
from celery_timeouts import TaskTimeout, blocking, portable_timeout
from celery_timeouts.blocking._deadline import limiting_scope
blocking.patch()
def sleeper():
    with portable_timeout(5) as scope:
        seen = limiting_scope()
        time.sleep(0.5)  # gevent's sleep: the other greenlets run meanwhile
        return scope.backend, seen
def cut():
    try:
        with portable_timeout(0.2):
            time.sleep(5)
    except TaskTimeout as error:
        return error.backend
started = time.monotonic()
jobs = [gevent.spawn(sleeper) for _ in range(3)] + [gevent.spawn(cut)]
gevent.joinall(jobs, raise_error=True)
print(json.dumps({"results": [job.value for job in jobs],
                  "seconds": time.monotonic() - started}))
"""
    completed = run_python(code)
    assert completed.returncode == 0, completed.stderr
    import json

    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["results"] == [["gevent", None]] * 3 + ["gevent"]
    assert report["seconds"] < 1.4  # three 0.5 s sleeps side by side, not one after another


def test_module_import_does_not_patch() -> None:
    completed = run_python(
        "import time, celery_timeouts.blocking as b; "
        "print(b.is_patched(), time.sleep.__module__)"
    )
    assert completed.stdout.split() == ["False", "time"], completed.stderr


@pytest.mark.skipif(sys.platform != "linux", reason="select.epoll is Linux's")
def test_epoll_wrapper_keeps_the_real_object_api(
    cleanup: Callable[[Callable[[], object]], None]
) -> None:
    poller = select.epoll()
    cleanup(poller.close)
    assert poller.fileno() >= 0 and not poller.closed
    other = select.epoll.fromfd(os.dup(poller.fileno()))
    other.close()
    assert other.closed


# -- compat alarms: a thread's own SIGALRM reaches it in a patched wait -------------------


class Alarm(Exception):
    pass


def _with_compat_alarm(body: Callable[[], object], handler: Any, delay: float) -> float:
    """Run `body` in a worker thread inside a long scope, with a compat alarm after `delay`
    seconds; return how long it took."""
    from celery_timeouts import compat

    def run() -> float:
        previous = compat.signal(compat.SIGALRM, handler)
        start = time.monotonic()
        try:
            with portable_timeout(FOREVER):
                compat.setitimer(compat.ITIMER_REAL, delay)
                try:
                    body()
                finally:
                    compat.setitimer(compat.ITIMER_REAL, 0)
        finally:
            compat.signal(compat.SIGALRM, previous)
        return time.monotonic() - start

    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["took"] = run()
        except BaseException as error:
            outcome["error"] = error

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(FOREVER * 2)
    assert not thread.is_alive()
    if "error" in outcome:
        raise outcome["error"]
    return float(outcome["took"])


def _raise_alarm(signum: int, frame: object) -> None:
    raise Alarm(signum)


@pytest.mark.parametrize("body", ["one long sleep", "polling sleeps", "queue.get"])
def test_a_compat_alarm_ends_a_patched_wait_with_its_handlers_exception(body: str) -> None:
    def one_long_sleep() -> None:
        time.sleep(FOREVER)

    def polling_sleeps() -> None:
        while True:
            time.sleep(0.05)

    def queue_get() -> None:
        queue.Queue().get()

    bodies = {"one long sleep": one_long_sleep, "polling sleeps": polling_sleeps,
              "queue.get": queue_get}
    started = time.monotonic()
    with pytest.raises(Alarm):
        _with_compat_alarm(bodies[body], _raise_alarm, 0.3)
    assert time.monotonic() - started < BOUND


def test_a_compat_alarm_whose_handler_returns_lets_the_wait_go_on() -> None:
    rang: list[float] = []

    def count(signum: int, frame: object) -> None:
        rang.append(time.monotonic())

    took = _with_compat_alarm(lambda: time.sleep(1.0), count, 0.2)
    assert len(rang) == 1
    assert took >= 0.95  # the sleep went on to its end after the handler returned
