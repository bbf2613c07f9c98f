"""Calls of one function, each in a process of its own, a few at once, each on its own share of the CPUs.

The study (``experiments.study --jobs=N``) trains N runs at once this way on a CPU machine: XLA:CPU does not
spread one small run over every core, so N runs side by side, each pinned to its own cores, finish sooner
than one after another (docs/study.md gives the measurement). Processes are started with ``spawn``: the
parent has usually started JAX already, and a forked JAX process may deadlock. Each process pins itself to its
CPUs before it does anything else, so JAX sizes its thread pools to them when it starts its backend.

No process outlives the study that started it: a SIGTERM to the parent (``kill``, ``timeout``, a batch
scheduler) terminates the running calls as Ctrl-C does, and on Linux the kernel sends each call's process
SIGTERM when its parent dies in any other way (even by SIGKILL). Each loses only what it had not saved.
"""

from __future__ import annotations

import ctypes
import dataclasses
import multiprocessing
import multiprocessing.connection
import os
import pathlib
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence


@dataclasses.dataclass(frozen=True)
class Call:
    """``fn(*args)`` in its own process, its stdout and stderr appended to ``log``; ``key`` names it."""

    key: object
    args: tuple
    log: pathlib.Path


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What a call gave: ``fn``'s return value, or ``error`` (one line) when it raised or its process died."""

    result: object
    error: str | None
    seconds: float


def available_cpus() -> int:
    """How many CPUs this process may run on (its affinity where the system has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def cpu_sets(jobs: int) -> list[frozenset[int] | None]:
    """This process's CPUs split into ``jobs`` disjoint sets of consecutive CPUs (sizes differing by at most one),
    or ``jobs`` times ``None`` (no pinning) where the system cannot pin a process."""
    if not hasattr(os, "sched_setaffinity"):
        return [None] * jobs
    cpus = sorted(os.sched_getaffinity(0))
    return [frozenset(cpus[i * len(cpus) // jobs : (i + 1) * len(cpus) // jobs]) for i in range(jobs)]


def run_in_processes(
    fn: Callable,
    calls: Sequence[Call],
    jobs: int,
    *,
    started: Callable[[Call, frozenset[int] | None], None],
    ended: Callable[[Call, Outcome], None],
) -> None:
    """Make every call, in order, at most ``jobs`` at once, each in a new process pinned to one of
    ``cpu_sets(jobs)`` that no other running call holds. ``started(call, cpus)`` and ``ended(call, outcome)``
    are called in this process as each starts and ends. A call that raises ends with its error (its traceback is
    in its log) and the others go on. ``fn`` must be importable by name (a module-level function).

    When this function is interrupted (Ctrl-C, SIGTERM, or any exception), the processes still running are
    terminated: each loses what it had not saved. A SIGTERM then ends this process with exit status 143."""
    context = multiprocessing.get_context("spawn")
    free = cpu_sets(jobs)
    waiting = list(calls)
    running = {}  # the receiving end of each process's pipe: (call, process, cpus, start time)
    previous_sigterm_handler = _exit_on_sigterm()
    try:
        while waiting or running:
            while waiting and free:
                call, cpus = waiting.pop(0), free.pop(0)
                receive, send = context.Pipe(duplex=False)
                process = context.Process(
                    target=_call_in_child, args=(fn, call.args, cpus, call.log, send, os.getpid())
                )
                process.start()
                send.close()  # the child holds the only sending end: its exit is an end of file here
                running[receive] = (call, process, cpus, time.monotonic())
                started(call, cpus)
            for receive in multiprocessing.connection.wait(list(running)):
                call, process, cpus, start = running.pop(receive)
                try:
                    result, error = receive.recv()
                except EOFError:  # killed, or died before it could answer
                    result, error = None, None
                receive.close()
                process.join()
                if error is None and process.exitcode != 0:
                    error = f"its process ended with exit code {process.exitcode}"
                free.append(cpus)
                ended(call, Outcome(result, error, time.monotonic() - start))
    finally:
        for receive, (_, process, _, _) in running.items():
            process.terminate()
            process.join()
            receive.close()
        if previous_sigterm_handler is not None:
            signal.signal(signal.SIGTERM, previous_sigterm_handler)


def _exit_on_sigterm():
    """Make SIGTERM raise ``SystemExit(143)`` in this process (so ``finally`` blocks run, as on Ctrl-C) and return
    the handler it replaces; ``None`` (nothing changed) outside the main thread, where Python cannot set one."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def exit_now(signum, frame):
        raise SystemExit(128 + signum)

    return signal.signal(signal.SIGTERM, exit_now)


def _die_with_parent(parent: int) -> None:
    """Ask Linux to send this process SIGTERM when its parent dies (``prctl(PR_SET_PDEATHSIG)``), and end now if
    the parent ``parent`` has died already; elsewhere, nothing."""
    if not sys.platform.startswith("linux"):
        return
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)


def placement(cpus: frozenset[int] | None) -> str:
    """Where a call runs, in words: ``"on CPUs 0,1"``, or ``"unpinned"``."""
    return f"on CPUs {','.join(map(str, sorted(cpus)))}" if cpus is not None else "unpinned"


def _one_line(error: BaseException) -> str:
    """``"KindOfError: the first line of its message"``."""
    lines = str(error).splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def _call_in_child(fn, args, cpus, log: pathlib.Path, send, parent: int) -> None:
    """The body of a call's process: tie its life to ``parent``'s, pin it, send its output to its log, call
    ``fn`` and send back ``(result, None)`` or ``(None, error)``."""
    _die_with_parent(parent)
    try:
        if cpus is not None:
            os.sched_setaffinity(0, cpus)
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as out:  # the descriptors themselves, so that XLA's own output goes there too
            os.dup2(out.fileno(), sys.stdout.fileno())
            os.dup2(out.fileno(), sys.stderr.fileno())
        print(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')}: process {os.getpid()} {placement(cpus)}", flush=True)
        answer = (fn(*args), None)
    except Exception as e:
        traceback.print_exc()
        answer = (None, _one_line(e))
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    send.send(answer)
    send.close()
