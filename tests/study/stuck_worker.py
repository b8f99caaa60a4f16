"""A worker entry for ``test_stuck_worker.py``: never returns (as a worker stuck after the study is done)."""

from __future__ import annotations

import threading


def wait_forever(*args: object) -> None:
    threading.Event().wait()
