"""One evaluation split over ranks (torch.distributed): each rank generates its own seeds, float64 sums merge.

Launch with ``torchrun`` (one machine or several; NCCL on GPUs, gloo on CPU); :meth:`Shard.from_env` reads
the ``RANK`` / ``WORLD_SIZE`` / ``MASTER_ADDR`` environment torchrun sets. The split: the seed list is cut at
the rungs into segments, and every segment is divided into ``world_size`` contiguous chunks (in proportion to
``weights``, equal by default); rank r takes chunk r of every segment. So each rank reaches every rung with
its share of exactly the rung's first images, image i still depends only on seed i, and a rank may get no
image of a segment (or of the whole evaluation). At each rung the ranks merge their float64 group moments
(``edmbench.metrics.fid.merge_moments``: all-reduced centred moments, exact up to the order of float64
additions; while the merged count is within the row limit, the rotated rows are gathered instead) and
gather their KID/PR reservoir rows; rank 0 computes the result and broadcasts it, then, after its
consumer asks for more (or stops: a pruned trial), broadcasts whether to continue. Every collective is
bounded by ``timeout_s``: a rank that dies makes the others fail with :class:`ShardError`, not hang.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

ENV_TIMEOUT = "EDMBENCH_SHARD_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 600.0


class ShardError(RuntimeError):
    """A collective of a sharded evaluation failed: a rank died, or did not arrive within the timeout."""


def split_counts(total: int, world_size: int, weights: Sequence[float] | None = None) -> list[int]:
    """Integer chunk sizes summing to ``total``, proportional to ``weights`` (largest remainders first)."""
    w = np.ones(world_size) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (world_size,) or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"shard weights must be {world_size} non-negative numbers, not all 0; got {weights}")
    exact = total * w / w.sum()
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: total - counts.sum()]:
        counts[i] += 1
    return counts.tolist()


@dataclass
class ShardPlan:
    """This rank's part of an evaluation: its seeds, their global positions, its image count at each rung."""

    seeds: list[int]
    positions: list[int]
    local_rungs: list[int]


def plan(seeds: Sequence[int], rungs: Sequence[int], rank: int, world_size: int,
         weights: Sequence[float] | None = None) -> ShardPlan:
    """Rank ``rank``'s chunk of every segment between consecutive ``rungs`` (the last rung = all seeds)."""
    mine, positions, local, start = [], [], [], 0
    for stop in rungs:
        counts = split_counts(stop - start, world_size, weights)
        lo = start + sum(counts[:rank])
        positions.extend(range(lo, lo + counts[rank]))
        mine.extend(seeds[lo:lo + counts[rank]])
        local.append(len(mine))
        start = stop
    return ShardPlan(list(mine), positions, local)


class Shard:
    """This process's rank in a ``torch.distributed`` process group, with bounded collectives."""

    def __init__(self, rank: int, world_size: int, *, device: str = "cpu",
                 weights: Sequence[float] | None = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.rank, self.world_size, self.device = rank, world_size, device
        self.weights, self.timeout_s = weights, timeout_s

    @classmethod
    def from_env(cls, device: str = "cpu", weights: Sequence[float] | None = None,
                 timeout_s: float | None = None) -> Shard | None:
        """Join the process group torchrun describes (``WORLD_SIZE`` > 1), else None (one process).

        Backend: NCCL when ``device`` is CUDA, gloo otherwise. ``timeout_s`` (default
        ``$EDMBENCH_SHARD_TIMEOUT_S`` or 600) bounds every collective."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return None
        import torch
        import torch.distributed as dist

        timeout_s = float(timeout_s or os.environ.get(ENV_TIMEOUT, DEFAULT_TIMEOUT_S))
        if not dist.is_initialized():
            cuda = str(device).startswith("cuda")
            if cuda:
                device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
                torch.cuda.set_device(device)
            dist.init_process_group("nccl" if cuda else "gloo",
                                    timeout=datetime.timedelta(seconds=timeout_s))
        return cls(dist.get_rank(), dist.get_world_size(), device=str(device), weights=weights,
                   timeout_s=timeout_s)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def plan(self, seeds: Sequence[int], rungs: Sequence[int]) -> ShardPlan:
        return plan(seeds, rungs, self.rank, self.world_size, self.weights)

    def _run(self, what: str, fn, *args):
        try:
            return fn(*args)
        except (RuntimeError, ValueError) as err:  # gloo/NCCL report a dead peer or a timeout this way
            raise ShardError(f"sharded evaluation: rank {self.rank} of {self.world_size} failed in {what}: "
                             f"another rank died or did not arrive within {self.timeout_s:g} s ({err})"
                             ) from err

    def all_reduce_sum(self, tensors: list) -> list:
        """Sum float64 tensors over ranks (a copy; moved to the communication device and back)."""
        import torch.distributed as dist

        out = []
        for t in tensors:
            buf = t.to(self.device, copy=True)
            self._run("all_reduce", dist.all_reduce, buf)
            out.append(buf.to(t.device))
        return out

    def gather_objects(self, obj) -> list:
        import torch.distributed as dist

        out = [None] * self.world_size
        self._run("all_gather_object", dist.all_gather_object, out, obj)
        return out

    def broadcast_object(self, obj):
        """Rank 0's ``obj`` on every rank."""
        import torch.distributed as dist

        box = [obj]
        self._run("broadcast_object_list", dist.broadcast_object_list, box, 0)
        return box[0]

    def barrier(self) -> None:
        import torch.distributed as dist

        self._run("barrier", dist.barrier)
