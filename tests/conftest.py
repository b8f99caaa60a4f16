"""Fixtures shared by several test directories."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one intra-op torch thread is much faster on a shared 2-core machine; the previous
    count is restored after the module. A directory opts in with an autouse fixture that requests it."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
