"""The search space: sampler knobs as float/int/log/categorical ranges, plus constraints between knobs.

Knob names are the fields of :class:`edmbench.sampling.SamplerConfig` (one spelling everywhere: TOML key =
Optuna param = CSV column). This module never lists them itself.
"""

from __future__ import annotations

import dataclasses
import itertools
import operator
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from edmbench.study._checks import Reader, close_match, is_number

PARAM_KINDS = ("float", "int", "categorical")
_OPERATORS = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt}
_CONSTRAINT = re.compile(r"^\s*([A-Za-z_][\w]*|[-+0-9.eE]+)\s*(<=|>=|<|>)\s*([A-Za-z_][\w]*|[-+0-9.eE]+)\s*$")


def knob_names() -> list[str]:
    """Every sampler knob: ``SamplerConfig``'s fields and registered knobs (read, never duplicated)."""
    from edmbench.sampling import SamplerConfig

    return [k for k in SamplerConfig.knob_names() if k != "extra"]


def parent_knobs() -> tuple[str, ...]:
    """The knobs that decide which other knobs are read (sampler, discretization, schedule, scaling), in the
    order they are suggested."""
    from edmbench.sampling import PARENT_KNOBS

    return tuple(PARENT_KNOBS)


def knobs_read(knobs: Mapping[str, Any]) -> frozenset[str]:
    """Every knob a configuration with ``knobs``' parent choices reads (the sampling registry's metadata)."""
    from edmbench.sampling import knobs_read as read

    return read({k: v for k, v in knobs.items() if k in parent_knobs()})


def active(knobs: Mapping[str, Any]) -> dict[str, Any]:
    """``knobs`` without those that its parent choices do not read."""
    read = knobs_read(knobs)
    return {k: v for k, v in knobs.items() if k in read}


@dataclasses.dataclass(frozen=True)
class ParamSpec:
    """One searched knob: ``float``/``int`` over [low, high] (log or stepped), or ``categorical``."""

    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        """Ask an Optuna trial for this knob."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1),
                                     log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)

    def grid_values(self) -> list[Any]:
        """Every value of a finite space (categorical, int, stepped float); error for continuous floats."""
        if self.kind == "categorical":
            return list(self.choices)
        if self.kind == "int":
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.step is None:
            raise ValueError(f"grid search needs a finite space: give {self.name!r} a step or choices")
        count = int((self.high - self.low) / self.step + 1e-9) + 1
        return [round(self.low + i * self.step, 12) for i in range(count)]

    def extremes(self) -> list[Any]:
        """The values a two-level screening design sets this knob to: a numeric range's two ends (the
        high end on the step grid), or every choice of a categorical knob."""
        if self.kind == "categorical":
            return list(self.choices)
        if self.kind == "int" or self.step is not None:
            return [self.grid_values()[0], self.grid_values()[-1]]
        return [self.low, self.high]

    def contains(self, value: Any) -> bool:
        if self.kind == "categorical":
            return value in self.choices
        return is_number(value) and self.low <= value <= self.high


def read_param(name: str, table: Any, where: str, problems: list[str]) -> ParamSpec | None:
    """Parse ``[space.<name>]``; problems are appended, ``None`` returned when it cannot be used."""
    r = Reader(table, where, problems)
    kind = r.string("type", required=True, choices=PARAM_KINDS)
    if kind == "categorical":
        r.check_keys(["type", "choices"])
        choices = r.list_of("choices", lambda v: isinstance(v, str | int | float | bool), "strings/numbers")
        if not choices:
            r.fail("choices must be a non-empty list")
        elif len(set(map(repr, choices))) != len(choices):
            r.fail(f"choices must be distinct, got {choices}")
        return ParamSpec(name, kind, choices=tuple(choices)) if choices else None
    r.check_keys(["type", "low", "high", "step", "log"])
    reader = r.integer if kind == "int" else r.number
    low, high = reader("low", required=True), reader("high", required=True)
    step = reader("step")
    log = r.boolean("log")
    n_before = len(problems)
    if low is not None and high is not None and low > high:
        r.fail(f"inverted range: low = {low} > high = {high}")
    if log and low is not None and low <= 0:
        r.fail(f"log range needs low > 0, got {low}")
    if step is not None and step <= 0:
        r.fail(f"step must be > 0, got {step}")
    if log and step is not None and step != 1:
        r.fail("log and step cannot be combined (Optuna)")
    if kind is None or low is None or high is None or len(problems) > n_before:
        return None
    return ParamSpec(name, kind, low=low, high=high, step=step, log=log)


@dataclasses.dataclass(frozen=True)
class Constraint:
    """``left OP right`` between knobs or numbers, e.g. ``"s_tmin <= s_tmax"``."""

    text: str
    left: str | float
    op: str
    right: str | float

    def holds(self, values: Mapping[str, Any]) -> bool:
        def value(side: str | float) -> Any:
            return values[side] if isinstance(side, str) else side

        return bool(_OPERATORS[self.op](value(self.left), value(self.right)))

    def names(self) -> list[str]:
        return [s for s in (self.left, self.right) if isinstance(s, str)]


def parse_constraint(text: Any, valid_names: Sequence[str]) -> Constraint:
    """Parse ``"a <= b"``; names must be knobs that are searched or fixed."""
    match = _CONSTRAINT.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"constraint {text!r} must look like 'name <= name' or 'name > number' "
                         f"(operators: {', '.join(_OPERATORS)})")
    sides: list[str | float] = []
    for token in (match.group(1), match.group(3)):
        if re.match(r"^[A-Za-z_]", token):
            if token not in valid_names:
                raise ValueError(f"constraint {text!r} names {token!r}, which is neither searched nor "
                                 f"fixed{close_match(token, valid_names)}; known: {', '.join(valid_names)}")
            sides.append(token)
        else:
            sides.append(float(token))
    return Constraint(text.strip(), sides[0], match.group(2), sides[1])


def violated(constraints: Sequence[Constraint], values: Mapping[str, Any]) -> list[str]:
    """The constraints that ``values`` (fixed + suggested knobs) breaks; knobs absent are skipped."""
    return [c.text for c in constraints if all(n in values for n in c.names()) and not c.holds(values)]


def grid_points(space: Sequence[ParamSpec], fixed: Mapping[str, Any],
                constraints: Sequence[Constraint]) -> Iterator[dict[str, Any]]:
    """The cartesian product of every knob's values, in spec order, with the knobs that a point's parents do
    not read left out (so each distinct configuration appears once), minus points breaking a constraint."""
    names, seen = [p.name for p in space], []
    for combo in itertools.product(*(p.grid_values() for p in space)):
        point = dict(zip(names, combo, strict=True))
        read = knobs_read({**fixed, **point})
        point = {k: v for k, v in point.items() if k in read}
        if point not in seen and not violated(constraints, {**fixed, **point}):
            seen.append(point)
            yield point


class ConstraintViolation(ValueError):
    """The suggested knobs break a ``[search] constraints`` entry."""


def suggest_knobs(trial: Any, space: Sequence[ParamSpec], fixed: Mapping[str, Any],
                  constraints: Sequence[Constraint]) -> dict[str, Any]:
    """Fixed knobs plus the trial's suggestions, define-by-run: the parents first (sampler, discretization,
    schedule, scaling, each only when the parents before it read it), then only the knobs they read, in spec
    order; the others stay at ``SamplerConfig``'s defaults. Raises :class:`ConstraintViolation`."""
    knobs, by_name = dict(fixed), {p.name: p for p in space}
    for parent in parent_knobs():
        if parent in by_name and parent in knobs_read(knobs):
            knobs[parent] = by_name[parent].suggest(trial)
    read = knobs_read(knobs)
    for param in space:
        if param.name not in parent_knobs() and param.name in read:
            knobs[param.name] = param.suggest(trial)
    broken = violated(constraints, knobs)
    if broken:
        raise ConstraintViolation(f"constraint(s) violated: {'; '.join(broken)}")
    return knobs


def parent_choices(space: Sequence[ParamSpec], fixed: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every combination of parent values a trial can reach (searched parents' choices x fixed parents), with
    parents that the combination does not read left out."""
    from edmbench.sampling import SamplerConfig

    defaults, by_name = SamplerConfig.defaults(), {p.name: p for p in space}
    combos: list[dict[str, Any]] = [{}]
    for parent in parent_knobs():
        grown = []
        for combo in combos:
            if parent not in knobs_read({**fixed, **combo}):
                grown.append(combo)
                continue
            values = (by_name[parent].choices if parent in by_name and by_name[parent].kind == "categorical"
                      else [fixed.get(parent, defaults[parent])])
            grown += [{**combo, parent: v} for v in values]
        combos = grown
    out = []
    for combo in combos:
        if combo not in out:
            out.append(combo)
    return out
