"""Untested interpreters take the conservative path, by construction (`_interpreter`).

Python 3.14, free-threaded builds and PyPy cannot run on these machines: the decision is
a pure function of the interpreter's facts, tested here for each of them.
"""

from __future__ import annotations

import sys
import warnings

import pytest

from celery_timeouts import _interpreter
from celery_timeouts._interpreter import Interpreter, Mechanisms, mechanisms_for


@pytest.mark.parametrize("version", [(3, 10), (3, 11)])
def test_verified_cpython_injects_and_needs_no_instruction_events(
    version: tuple[int, int],
) -> None:
    assert mechanisms_for(Interpreter("cpython", version, False)) == Mechanisms(
        None, False, None
    )


@pytest.mark.parametrize("version", [(3, 12), (3, 13)])
def test_cpython_3_12_and_3_13_deliver_at_the_next_safe_instruction(
    version: tuple[int, int],
) -> None:
    # Both compile `while <condition>:` with its closing jump outside the try around it.
    assert mechanisms_for(Interpreter("cpython", version, False)) == Mechanisms(
        None, True, None
    )


@pytest.mark.parametrize("version", [(3, 14), (3, 15), (4, 0)])
def test_newer_cpython_injects_but_raises_at_exit_where_a_loop_could_skip_handlers(
    version: tuple[int, int],
) -> None:
    mechanisms = mechanisms_for(Interpreter("cpython", version, False))
    assert mechanisms.injection_refused is None
    assert mechanisms.instruction_delivery is False
    assert mechanisms.unverified is not None
    assert f"CPython {version[0]}.{version[1]} is newer than the newest verified (3.13)" in (
        mechanisms.unverified
    )
    assert "raised when its scope exits" in mechanisms.unverified


@pytest.mark.parametrize("version", [(3, 13), (3, 14)])
def test_free_threaded_builds_refuse_injection_with_the_reason_and_the_way_out(
    version: tuple[int, int],
) -> None:
    mechanisms = mechanisms_for(Interpreter("cpython", version, True))
    assert mechanisms.instruction_delivery is False
    assert mechanisms.injection_refused is not None
    assert "free-threaded" in mechanisms.injection_refused
    assert "backend='signal'" in mechanisms.injection_refused


def test_other_implementations_refuse_injection() -> None:
    mechanisms = mechanisms_for(Interpreter("pypy", (3, 10), False))
    assert mechanisms.injection_refused is not None
    assert mechanisms.injection_refused.startswith("pypy has no PyThreadState_SetAsyncExc")
    assert mechanisms.instruction_delivery is False


def test_this_interpreter_is_a_verified_one() -> None:
    # CI runs 3.10 to 3.13 builds with the GIL: none may take the conservative path.
    assert _interpreter.MECHANISMS.injection_refused is None
    assert _interpreter.MECHANISMS.unverified is None
    assert _interpreter.MECHANISMS.instruction_delivery is (sys.version_info >= (3, 12))


def test_an_unverified_interpreter_warns_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        _interpreter, "MECHANISMS", mechanisms_for(Interpreter("cpython", (3, 14), False))
    )
    monkeypatch.setattr(_interpreter, "_warned", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _interpreter.warn_once_if_unverified()
        _interpreter.warn_once_if_unverified()
    assert [str(w.message) for w in caught] == [
        "celery-timeouts: " + str(_interpreter.MECHANISMS.unverified)
    ]
    assert caught[0].category is RuntimeWarning


@pytest.mark.skipif(
    sys.version_info < (3, 12),
    reason="the exit call is LOAD_CONST None x3 + CALL from 3.12 (3.11 adds a PRECALL); "
    "instruction delivery runs only on 3.13",
)
def test_a_with_blocks_exit_call_is_never_a_delivery_point() -> None:
    import dis

    from celery_timeouts.backends.instruction_events import _unsafe_offsets

    def body(manager: object) -> int:
        total = 0
        with manager:  # type: ignore[attr-defined]
            total += 1
        return total

    instructions = list(dis.get_instructions(body))
    unsafe = _unsafe_offsets(body.__code__)

    def after_three_nones(index: int) -> bool:
        before = instructions[max(index - 3, 0):index]
        return len(before) == 3 and all(
            i.opname == "LOAD_CONST" and i.argval is None for i in before
        )

    exit_calls = [
        call for index, call in enumerate(instructions)
        if call.opname == "CALL" and after_three_nones(index)
    ]
    assert exit_calls, dis.Bytecode(body).dis()
    assert all(call.offset in unsafe for call in exit_calls)


def test_where_injection_is_refused_a_worker_thread_scope_says_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from celery_timeouts import (
        BackendUnavailable,
        backends,
        current_scope,
        detect_backend,
        portable_timeout,
    )
    from celery_timeouts.backends import watchdog

    from conftest import run_in_thread

    refused = mechanisms_for(Interpreter("cpython", (3, 14), True))
    monkeypatch.setattr(watchdog, "_INJECTION_REFUSED", refused.injection_refused)
    monkeypatch.setattr(backends, "MECHANISMS", refused)

    def body() -> tuple[str, str, object]:
        with pytest.raises(BackendUnavailable) as refusal, portable_timeout(5):
            pass
        return str(refusal.value), detect_backend().reason, current_scope()

    message, reason, scope = run_in_thread(body)
    assert message.startswith("backend='thread' cannot run here: free-threaded CPython 3.14")
    assert "scopes entered here raise BackendUnavailable: free-threaded" in reason
    assert scope is None  # the refused entry left nothing behind
    with pytest.raises(BackendUnavailable, match="cannot raise in another thread"):
        backends.get_backend("thread").deliver(0, TimeoutError(), None)  # type: ignore[attr-defined]
