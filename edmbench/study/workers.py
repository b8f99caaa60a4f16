"""Local worker processes sharing one storage (``--workers N``): spawned, one GPU each if several."""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import signal
from collections.abc import Callable
from typing import Any


def device_for(device: str, worker_id: int) -> str:
    """``cuda`` with several GPUs -> ``cuda:<worker_id mod count>``; anything else unchanged."""
    if device != "cuda":
        return device
    import torch

    count = torch.cuda.device_count()
    return f"cuda:{worker_id % count}" if count > 1 else device


def run_processes(entry: Callable[..., None], spec: Any, options: Any) -> dict[str, int]:
    """Start ``options.workers`` spawned processes running ``entry``; Ctrl-C stops them cleanly."""
    ctx = multiprocessing.get_context("spawn")
    procs = []
    for worker_id in range(options.workers):
        opts = dataclasses.replace(options, device=device_for(options.device, worker_id))
        proc = ctx.Process(target=entry, args=(spec.source_text, spec.path, opts, worker_id),
                           name=f"edmbench-worker-{worker_id}")
        proc.start()
        procs.append(proc)
    try:
        for proc in procs:
            proc.join()
    except KeyboardInterrupt:  # children got SIGINT from the terminal too; make sure, then wait for them
        for proc in procs:
            if proc.is_alive() and proc.pid is not None:
                _interrupt(proc.pid)
        for proc in procs:
            proc.join()
        raise
    failed = [p.name for p in procs if p.exitcode not in (0, None)]
    if failed:
        raise RuntimeError(f"worker process(es) {', '.join(failed)} exited with an error (see above)")
    return {}


def _interrupt(pid: int) -> None:
    import os

    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGINT)
