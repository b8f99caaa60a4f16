"""A small generic name -> entry registry and the one "unknown name; did you mean ...?" message.

Every named choice in edmbench (samplers, discretisations, schedules, scalings, checkpoint readers, Optuna
samplers and pruners, ...) is a :class:`Registry`: ``get`` refuses an unknown name with one line that lists
the valid names and the closest one, and ``names()`` feeds TOML validation and argparse ``choices``.
This module imports nothing from edmbench, so every layer may use it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

T = TypeVar("T")


def close_match(name: object, valid: Iterable[str]) -> str | None:
    """The valid name closest to ``name`` (difflib's ratio >= 0.6), or None."""
    matches = difflib.get_close_matches(str(name), list(valid), n=1)
    return matches[0] if matches else None


def unknown_name_message(kind: str, name: object, valid: Iterable[str]) -> str:
    """``unknown <kind> 'x'; did you mean 'y'? Valid <kind> names: a, b, c`` (valid names sorted)."""
    valid = sorted(valid)
    close = close_match(name, valid)
    hint = f"; did you mean {close!r}?" if close else ""
    return f"unknown {kind} {name!r}{hint} Valid {kind} names: {', '.join(valid)}"


def check_name(kind: str, name: object, valid: Iterable[str]) -> None:
    """Raise ValueError (``unknown_name_message``) unless ``name`` is one of ``valid``."""
    valid = tuple(valid)
    if not isinstance(name, str) or name not in valid:
        raise ValueError(unknown_name_message(kind, name, valid))


class Registry(Generic[T]):
    """Named entries of one kind (``kind`` names it in messages: "sampler", "discretization", ...).

    Iterating yields the names in sorted order; ``name in registry`` tests membership.
    """

    def __init__(self, kind: str, entries: Iterable[tuple[str, T]] = ()) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        for name, entry in entries:
            self.register(name, entry)

    def register(self, name: str, entry: T) -> T:
        """Add ``entry`` under ``name``; a name that is already taken raises (use ``override`` in tests)."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} name must be a non-empty string, got {name!r}")
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> T:
        """Remove and return the entry ``name`` (unknown names raise as in ``get``)."""
        entry = self.get(name)
        del self._entries[name]
        return entry

    @contextmanager
    def override(self, name: str, entry: T) -> Iterator[T]:
        """Register (or replace) ``name`` for the duration of a ``with`` block, then restore the registry."""
        missing = object()
        before = self._entries.get(name, missing)
        self._entries[name] = entry
        try:
            yield entry
        finally:
            if before is missing:
                self._entries.pop(name, None)
            else:
                self._entries[name] = before  # type: ignore[assignment]

    def get(self, name: str) -> T:
        """The entry for ``name``; an unknown name raises ValueError naming the valid ones and a close one."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise ValueError(unknown_name_message(self.kind, name, self._entries)) from None

    def names(self) -> tuple[str, ...]:
        """Registered names, sorted."""
        return tuple(sorted(self._entries))

    def items(self) -> list[tuple[str, T]]:
        """(name, entry) pairs in name order."""
        return [(name, self._entries[name]) for name in self.names()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self.names())})"
