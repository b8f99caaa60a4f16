"""edmbench's error types: every refusal of bad input is an ``EdmbenchError`` (one line for the CLI).

``EdmbenchError`` subclasses ``ValueError`` so callers that already catch ``ValueError`` keep working.
Reader errors (``CheckpointError`` and its subclasses) name the file, the rule that was broken and what is
expected; they never echo the file's content beyond a short, sanitised excerpt (``describe``).
"""

from __future__ import annotations

import os
from typing import Any


class EdmbenchError(ValueError):
    """Base class: bad input, refused with one line naming the problem and what is valid."""


class CheckpointError(EdmbenchError):
    """A checkpoint/data file is corrupt, truncated, of an unknown format or inconsistent with its config."""


class UnsafePickleError(CheckpointError):
    """The pickle references a global or construct outside the allow-list; nothing from it was executed."""


class LimitError(CheckpointError):
    """A file asks for more than a documented limit allows (bytes, opcodes, memo, depth, parameters)."""


class NonFiniteWeightsError(CheckpointError):
    """A network's weights hold NaN or infinity (refused by default; ``allow_nonfinite=True`` to load)."""


class ChecksumError(CheckpointError):
    """A file's sha256 differs from the expected (manifest or recorded) value."""


def describe(value: Any, limit: int = 60) -> str:
    """A bounded, printable description of an untrusted value: its type and a short sanitised excerpt.

    Never calls the value's ``repr`` on containers (which may be self-referencing or huge), so no heap
    contents or addresses reach a message.
    """
    if isinstance(value, bool | int):
        text = str(value) if value.bit_length() <= 64 else f"<{value.bit_length()}-bit integer>"
    elif isinstance(value, float):
        text = repr(value)
    elif isinstance(value, str | bytes):
        raw = value if isinstance(value, str) else value.decode("latin-1")
        text = repr("".join(c if c.isprintable() else "?" for c in raw[:limit]))
        text += "..." if len(raw) > limit else ""
    elif value is None:
        text = "None"
    else:
        size = len(value) if isinstance(value, list | tuple | dict | set) else None
        text = f"<{type(value).__name__}" + (f" of {size} items>" if size is not None else ">")
    return text[: limit + 8]


def env_int(name: str, default: int) -> int:
    """Integer limit from environment variable ``name`` (a positive int), else ``default``."""
    text = os.environ.get(name)
    if not text:
        return default
    try:
        value = int(float(text)) if "e" in text.lower() else int(text)
    except ValueError:
        raise EdmbenchError(f"${name}={text!r} is not an integer; expected a positive integer") from None
    if value < 1:
        raise EdmbenchError(f"${name}={text!r}: expected a positive integer")
    return value


# bad input, refused with one line and exit status 2 by every command (tracebacks only with --debug):
# edmbench's own errors (EdmbenchError is a ValueError), validation ValueErrors, missing/unreadable files,
# and numeric overflow from a value that is out of range (e.g. --rho 1e-300)
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, ArithmeticError)

DEBUG_ENV = "EDMBENCH_DEBUG"  # set by ``edmbench --debug``: errors propagate with their traceback


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV) == "1"


def one_line(exc: BaseException, limit: int = 400) -> str:
    """An error as one printable line: its message's first line (bounded), prefixed by its type name unless
    it is bad input (ValueError, OSError) or one of edmbench's own errors, whose messages are complete."""
    text = (str(exc).splitlines() or [""])[0].strip()
    text = "".join(c if c.isprintable() else "?" for c in text)[:limit]
    if isinstance(exc, ArithmeticError):
        return f"numeric {type(exc).__name__} from the given values ({text}); check options with extreme " \
            "magnitudes (e.g. --rho, sigma bounds) and use values within their documented ranges"
    own = type(exc).__module__.partition(".")[0] == "edmbench"  # e.g. study.storage.StorageError
    if not (own or isinstance(exc, ValueError | OSError)) or not text:
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text
