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


def run_processes(entry: Callable[..., None], spec: Any, options: Any,
                  local: Callable[[Any], Any]) -> Any:
    """Run ``local(options)`` as worker 0 in this process and ``entry`` in ``options.workers - 1`` spawned
    processes; Ctrl-C (or SIGTERM) in this process interrupts them all and waits for them."""
    ctx = multiprocessing.get_context("spawn")
    procs = []
    for worker_id in range(1, options.workers):
        opts = dataclasses.replace(options, device=device_for(options.device, worker_id))
        proc = ctx.Process(target=entry, args=(spec.source_text, spec.path, opts, worker_id),
                           name=f"edmbench-worker-{worker_id}")
        proc.start()
        procs.append(proc)
    try:
        counts = local(dataclasses.replace(options, device=device_for(options.device, 0)))
        for proc in procs:
            proc.join()
    except KeyboardInterrupt:
        for proc in procs:
            if proc.is_alive() and proc.pid is not None:
                _interrupt(proc.pid)
        for proc in procs:
            proc.join()
        raise
    failed = [p.name for p in procs if p.exitcode != 0]
    if failed:
        raise RuntimeError(f"worker process(es) {', '.join(failed)} exited with an error (see above)")
    return counts


def _interrupt(pid: int) -> None:
    import os

    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGINT)
