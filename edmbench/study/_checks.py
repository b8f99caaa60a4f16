"""Small strict readers for TOML tables: every problem becomes one line of a :class:`SpecError`."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from edmbench import registry


class SpecError(ValueError):
    """A study spec is invalid; ``problems`` lists every problem found (one line each)."""

    def __init__(self, problems: list[str], source: str = "spec") -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid study {source}: {len(self.problems)} problem(s)\n{lines}")


def close_match(name: str, valid: Iterable[str]) -> str:
    """' (did you mean X?)' when a valid name is close to ``name`` (:func:`edmbench.registry.close_match`),
    else ''."""
    match = registry.close_match(name, valid)
    return f" (did you mean {match!r}?)" if match else ""


def unknown_keys(table: Mapping[str, Any], valid: Iterable[str], where: str) -> list[str]:
    """One problem per key of ``table`` not in ``valid``, naming the valid keys."""
    valid = list(valid)
    return [f"[{where}] unknown key {key!r}{close_match(key, valid)}; valid keys: {', '.join(valid)}"
            for key in table if key not in valid]


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class Reader:
    """Reads typed values from one TOML table, collecting problems instead of raising at the first."""

    def __init__(self, table: Any, where: str, problems: list[str]) -> None:
        if not isinstance(table, Mapping):
            problems.append(f"[{where}] must be a table, got {type(table).__name__}")
            table = {}
        self.table, self.where, self.problems = table, where, problems

    def check_keys(self, valid: Iterable[str]) -> None:
        self.problems.extend(unknown_keys(self.table, valid, self.where))

    def fail(self, message: str) -> None:
        self.problems.append(f"[{self.where}] {message}")

    def get(self, key: str, kind: Callable[[Any], bool], kind_name: str, default: Any = None,
            required: bool = False) -> Any:
        if key not in self.table:
            if required:
                self.fail(f"missing required key {key!r} ({kind_name})")
            return default
        value = self.table[key]
        if not kind(value):
            self.fail(f"{key} must be {kind_name}, got {value!r}")
            return default
        return value

    def string(self, key: str, default: str | None = None, required: bool = False,
               choices: Iterable[str] | None = None) -> str | None:
        value = self.get(key, lambda v: isinstance(v, str), "a string", default, required)
        if choices is not None and value is not None and value not in (choices := list(choices)):
            self.fail(f"{key} = {value!r} is not valid{close_match(value, choices)}; "
                      f"valid: {', '.join(choices)}")
            return default
        return value

    def integer(self, key: str, default: int | None = None, required: bool = False,
                minimum: int | None = None) -> int | None:
        value = self.get(key, lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer",
                         default, required)
        if value is not None and minimum is not None and value < minimum:
            self.fail(f"{key} must be >= {minimum}, got {value}")
            return default
        return value

    def number(self, key: str, default: float | None = None, required: bool = False,
               positive: bool = False) -> float | None:
        value = self.get(key, lambda v: is_number(v) and math.isfinite(v), "a finite number",
                         default, required)
        if value is not None and positive and value <= 0:
            self.fail(f"{key} must be > 0, got {value}")
            return default
        return None if value is None else float(value)

    def boolean(self, key: str, default: bool = False) -> bool:
        return self.get(key, lambda v: isinstance(v, bool), "true or false", default)

    def list_of(self, key: str, item: Callable[[Any], bool], item_name: str,
                default: list | None = None) -> list:
        value = self.get(key, lambda v: isinstance(v, list) and all(item(x) for x in v),
                         f"a list of {item_name}", default, False)
        return list(value) if value is not None else []

    def table_of(self, key: str) -> Mapping[str, Any]:
        return self.get(key, lambda v: isinstance(v, Mapping), "a table", {}, False)
