"""Calls of one function, each in a process of its own, a few at once, each on its own share of the CPUs.

The study (``experiments.study --jobs=N``) trains N runs at once this way on a CPU machine: XLA:CPU does not
spread one small run over every core, so N runs side by side, each pinned to its own cores, finish sooner
than one after another (docs/study.md gives the measurement). Processes are started with ``spawn``: the
parent has usually started JAX already, and a forked JAX process may deadlock. Each process pins itself to its
CPUs before it does anything else, so JAX sizes its thread pools to them when it starts its backend.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import multiprocessing.connection
import os
import pathlib
import sys
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

    When this function is interrupted (Ctrl-C, or any exception), the processes still running are terminated:
    each loses what it had not saved."""
    context = multiprocessing.get_context("spawn")
    free = cpu_sets(jobs)
    waiting = list(calls)
    running = {}  # the receiving end of each process's pipe: (call, process, cpus, start time)
    try:
        while waiting or running:
            while waiting and free:
                call, cpus = waiting.pop(0), free.pop(0)
                receive, send = context.Pipe(duplex=False)
                process = context.Process(target=_call_in_child, args=(fn, call.args, cpus, call.log, send))
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


def placement(cpus: frozenset[int] | None) -> str:
    """Where a call runs, in words: ``"on CPUs 0,1"``, or ``"unpinned"``."""
    return f"on CPUs {','.join(map(str, sorted(cpus)))}" if cpus is not None else "unpinned"


def _one_line(error: BaseException) -> str:
    """``"KindOfError: the first line of its message"``."""
    lines = str(error).splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def _call_in_child(fn, args, cpus, log: pathlib.Path, send) -> None:
    """The body of a call's process: pin it, send its output to its log, call ``fn`` and send back
    ``(result, None)`` or ``(None, error)``."""
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
