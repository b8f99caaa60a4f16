"""One helper for 'unknown name' errors: list the valid names and suggest the closest one."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def unknown_name_message(kind: str, name: object, valid: Iterable[str]) -> str:
    valid = sorted(valid)
    close = difflib.get_close_matches(str(name), valid, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown {kind} {name!r}{hint} Valid {kind} names: {', '.join(valid)}"


def check_name(kind: str, name: object, valid: Iterable[str]) -> None:
    """Raise ValueError naming the valid choices (and a close match) if ``name`` is not one of them."""
    valid = tuple(valid)
    if name not in valid:
        raise ValueError(unknown_name_message(kind, name, valid))
