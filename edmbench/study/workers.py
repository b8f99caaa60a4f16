"""Local worker processes sharing one storage (``--workers N``): spawned, one GPU each if several.

Signals reach each worker once: the workers are started with SIGINT ignored (a terminal's Ctrl-C goes to the
whole foreground process group, parent included), and the parent, on its own interrupt, sends each live
worker one SIGTERM, which the worker turns into a single ``KeyboardInterrupt`` (``runner.interrupt_once``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

_log = logging.getLogger("edmbench.study")
STUCK_S = 300.0  # a worker still alive this long after the study last had a running trial is stuck


def device_for(device: str, worker_id: int) -> str:
    """``cuda`` with several GPUs -> ``cuda:<worker_id mod count>``; anything else unchanged."""
    if device != "cuda":
        return device
    import torch

    count = torch.cuda.device_count()
    return f"cuda:{worker_id % count}" if count > 1 else device


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """SIGINT ignored while a child starts: the ignored disposition survives exec, and Python keeps it."""
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: nothing to change
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def dump_stacks_on_sigusr1() -> None:
    """``kill -USR1 PID`` prints every thread's Python stack to stderr (diagnosing a hung worker)."""
    import faulthandler
    import sys

    stream = sys.__stderr__  # the process's own stderr (tests may replace sys.stderr with a buffer)
    if hasattr(faulthandler, "register") and stream is not None:  # not on Windows
        with contextlib.suppress(AttributeError, OSError, ValueError):  # no file descriptor to write to
            stream.fileno()
            faulthandler.register(signal.SIGUSR1, file=stream, all_threads=True)


def _child(entry: Callable[..., None], *args: Any) -> None:
    """A spawned worker: stacks on SIGUSR1, then ``entry(*args)``."""
    dump_stacks_on_sigusr1()
    entry(*args)


def run_processes(entry: Callable[..., None], spec: Any, options: Any,
                  local: Callable[[Any], Any], busy: Callable[[], bool] | None = None) -> Any:
    """Run ``local(options)`` as worker 0 in this process and ``entry`` in ``options.workers - 1`` spawned
    processes; an interrupt in this process stops them all (one SIGTERM each) and waits for them.

    A worker that dies (kill -9, out of memory) does not fail the command: its trial is retried by the
    others once its heartbeat is stale, and the study completes; the death is logged. ``busy()``: whether
    the study has a running trial; a worker still alive ``STUCK_S`` seconds after it last had one is
    stuck (it has nothing left to do): its stacks are printed, it is stopped, and the command goes on."""
    ctx = multiprocessing.get_context("spawn")
    procs = []
    try:
        for worker_id in range(1, options.workers):
            opts = dataclasses.replace(options, device=device_for(options.device, worker_id))
            proc = ctx.Process(target=_child, args=(entry, spec.source_text, spec.path, opts, worker_id),
                               name=f"edmbench-worker-{worker_id}")
            with _sigint_ignored():
                proc.start()
            procs.append(proc)
        counts = local(dataclasses.replace(options, device=device_for(options.device, 0)))
        _join_or_stop_stuck(procs, busy)
    except KeyboardInterrupt:
        pass  # the workers are stopped below, once the interrupt's traceback is gone (its frames may hold a
        # cursor whose SQLite read lock would block every worker's retire: "database is locked")
    except BaseException:
        _stop(procs)
        raise
    else:
        for proc in procs:
            if proc.exitcode != 0:
                _log.warning("worker process %s exited with code %s; the study went on without it",
                             proc.name, proc.exitcode)
        return counts
    release_interrupted_statements()
    _stop(procs)
    raise KeyboardInterrupt


def release_interrupted_statements() -> None:
    """Free what an interrupt left half-done in the frames of its traceback: a storage cursor stopped
    between ``execute`` and its last row keeps its statement active, which on SQLite is a read lock that
    blocks every commit, this process's retire included ("database is locked" after the busy timeout).
    Call once the interrupt's traceback is dropped (outside its ``except`` block); the frames form reference
    cycles, hence the collection."""
    import gc

    gc.collect()


def _stop(procs: list[Any]) -> None:
    """One SIGTERM to each live worker (each retires its trial), then wait for them."""
    for proc in procs:
        if proc.is_alive() and proc.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
    for proc in procs:
        proc.join()


def _join_or_stop_stuck(procs: list[Any], busy: Callable[[], bool] | None) -> None:
    """Join every worker; one alive ``STUCK_S`` seconds after the study was last ``busy()`` is stuck: its
    stacks go to stderr (SIGUSR1), then it is killed. Without ``busy``, wait as long as it takes."""
    idle_since = time.monotonic()
    for proc in procs:
        while proc.is_alive():
            proc.join(timeout=1.0 if busy is not None else None)
            if not proc.is_alive():
                break
            try:
                working = busy()
            except Exception:  # a storage that cannot be read counts as idle
                working = False
            if working:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > STUCK_S:
                _log.warning("worker process %s (pid %s) is still alive %g s after the study's last running "
                             "trial: it is stuck; its stacks follow, then it is stopped", proc.name, proc.pid,
                             STUCK_S)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGUSR1)
                proc.join(timeout=5.0)  # time to print the stacks
                proc.kill()
                proc.join()
