"""Which SamplerConfig knobs a configuration reads: one source of truth, derived from registry metadata.

A configuration has *parent* knobs whose value is a registry name (``PARENT_KNOBS``, in the order a search
suggests them: sampler, discretization, schedule, scaling). Every registry entry declares the knobs it reads
(``entry.knobs``; a sampler's are its ``params`` plus the churn knobs if it churns), and a parent is read
only if something already read declares it (schedule and scaling are read by euler and heun only). So the
set of knobs a configuration reads follows from its parent choices alone (``read_by``).

A knob beyond SamplerConfig's fields is a registered :class:`Knob` (default + check), declared together
with the entry that reads it: ``register("sampler", info, Knob(...))`` is the whole change. Defaults of
the built-in knobs live only in ``SamplerConfig`` (``SamplerConfig.defaults()``); the user-facing helpers
that fill them in (``knobs_read``, ``ignored_knobs``) are in ``edmbench.sampling.config``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

from edmbench.registry import Registry
from edmbench.sampling.discretizations import DISCRETIZATIONS
from edmbench.sampling.registry import SAMPLERS
from edmbench.sampling.schedules import SCALINGS, SCHEDULES

PARENTS: dict[str, Registry[Any]] = {
    "sampler": SAMPLERS, "discretization": DISCRETIZATIONS, "schedule": SCHEDULES, "scaling": SCALINGS,
}
PARENT_KNOBS: tuple[str, ...] = tuple(PARENTS)
ALWAYS_READ: tuple[str, ...] = ("sampler", "num_steps", "sigma_min", "sigma_max", "discretization",
                                 "endpoint", "afs")


@dataclass(frozen=True)
class Knob:
    """A knob that is not a SamplerConfig field (its value lives in ``SamplerConfig.extra``).

    ``check(value)`` returns the normalised value or raises ValueError naming the valid range.
    """

    name: str
    default: Any
    check: Callable[[Any], Any]
    description: str


KNOBS: Registry[Knob] = Registry("knob")


def read_by(parents: Mapping[str, str]) -> frozenset[str]:
    """Every knob read by a configuration with these parent choices (each parent that is read must be
    given; unknown names raise the registry's ValueError)."""
    read = set(ALWAYS_READ)
    for parent in PARENT_KNOBS:  # in order: an earlier entry may declare a later parent (heun -> schedule)
        if parent in read:
            read.update(PARENTS[parent].get(parents[parent]).knobs)
    return frozenset(read)


def readers(knob: str) -> str:
    """Who reads ``knob``, e.g. "samplers 'euler', 'heun'" or "discretization 'edm'" ("" if nobody)."""
    if knob in ALWAYS_READ:
        return "every configuration"
    groups = []
    for parent, registry in PARENTS.items():
        names = [name for name, entry in registry.items() if knob in entry.knobs]
        if names:
            groups.append(f"{parent}{'s' if len(names) > 1 else ''} {', '.join(map(repr, names))}")
    return " or ".join(groups) or f"no registered {', '.join(PARENT_KNOBS)}"


def register(parent: str, entry: Any, *knobs: Knob) -> None:
    """Register ``entry`` (it has ``.name``, ``.knobs``) under ``parent`` with the new ``knobs`` it reads."""
    for knob in knobs:
        KNOBS.register(knob.name, knob)
    PARENTS[parent].register(entry.name, entry)


@contextmanager
def registered(parent: str, entry: Any, *knobs: Knob) -> Iterator[None]:
    """``register`` for the duration of a ``with`` block (tests), then restore the registries."""
    with ExitStack() as stack:
        for knob in knobs:
            stack.enter_context(KNOBS.override(knob.name, knob))
        stack.enter_context(PARENTS[parent].override(entry.name, entry))
        yield
