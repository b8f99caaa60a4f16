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
    """Names of every sampler knob: the fields of ``SamplerConfig`` (read, never duplicated)."""
    from edmbench.sampling import SamplerConfig

    return [f.name for f in dataclasses.fields(SamplerConfig)]


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
    """The cartesian product of every knob's values, in spec order, minus points breaking a constraint."""
    names = [p.name for p in space]
    for combo in itertools.product(*(p.grid_values() for p in space)):
        point = dict(zip(names, combo, strict=True))
        if not violated(constraints, {**fixed, **point}):
            yield point


class ConstraintViolation(ValueError):
    """The suggested knobs break a ``[search] constraints`` entry."""


def sampler_specific_knobs() -> set[str]:
    """Knobs that only some samplers read: each sampler's ``params`` plus the churn knobs (registry data)."""
    from edmbench.sampling import Churn, get_sampler, sampler_names

    names = {p for s in sampler_names() for p in get_sampler(s).params}
    return names | {f.name for f in dataclasses.fields(Churn)}


def knob_active(name: str, sampler: str) -> bool:
    """Whether ``sampler`` reads knob ``name`` (knobs every sampler reads are always active)."""
    from edmbench.sampling import Churn, get_sampler

    if name not in sampler_specific_knobs():
        return True
    info = get_sampler(sampler)
    return name in info.params or (info.churn and name in {f.name for f in dataclasses.fields(Churn)})


def suggest_knobs(trial: Any, space: Sequence[ParamSpec], fixed: Mapping[str, Any],
                  constraints: Sequence[Constraint], default_sampler: str) -> dict[str, Any]:
    """Fixed knobs plus the trial's suggestions (define-by-run: knobs the chosen sampler ignores are not
    suggested, so they stay at their defaults). Raises :class:`ConstraintViolation`."""
    knobs = dict(fixed)
    categorical_first = sorted(space, key=lambda p: p.kind != "categorical" or p.name != "sampler")
    for param in categorical_first:
        if knob_active(param.name, knobs.get("sampler", default_sampler)):
            knobs[param.name] = param.suggest(trial)
    broken = violated(constraints, knobs)
    if broken:
        raise ConstraintViolation(f"constraint(s) violated: {'; '.join(broken)}")
    return knobs
