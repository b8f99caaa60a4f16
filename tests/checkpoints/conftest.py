"""Fixtures for the checkpoint tests: tiny networks, and pickles in NVIDIA EDM's persistence format
(written by ``edm_format.py`` beside this file)."""

from __future__ import annotations

import importlib.util
import types
from pathlib import Path
from typing import Any

import pytest
import torch

from edmbench.denoisers.precond import EDMPrecond, Precond, VEPrecond, VPPrecond, iDDPMPrecond


def _load_sibling(name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(
        f"edmbench_tests_checkpoints_{name}", Path(__file__).with_name(f"{name}.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


edm_format = _load_sibling("edm_format")

# an embedded "module source" that would create a marker file if anyone executed it
MODULE_SRC_TEMPLATE = "import pathlib\npathlib.Path({marker!r}).touch()\n"

configs = _load_sibling("tiny_configs")  # the one owner of the tiny configurations
SONG_SMALL, DDPMPP, NCSNPP, ADM_SMALL = configs.SONG_SMALL, configs.DDPMPP, configs.NCSNPP, configs.ADM_SMALL

# every preconditioner x every architecture (DDPM++, NCSN++, ADM), tiny, 8x8, class-conditional, augment_dim
CASES: dict[str, tuple[type[Precond], dict[str, Any]]] = {
    f"{cls.__name__}-{arch}": (cls, cfg)
    for cls in (VPPrecond, VEPrecond, iDDPMPrecond, EDMPrecond)
    for arch, cfg in (("ddpmpp", DDPMPP), ("ncsnpp", NCSNPP), ("adm", ADM_SMALL))
}


def make_network(
    cls: type[Precond], cfg: dict[str, Any], seed: int = 0, label_dim: int = 10, img_channels: int = 3
) -> Precond:
    """A tiny network with every weight random (EDM zero-initialises some layers; undo that)."""
    torch.manual_seed(seed)
    net = cls(img_resolution=8, img_channels=img_channels, label_dim=label_dim, augment_dim=9, **cfg)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.2)
    return net.eval()


@pytest.fixture
def write_pickle(tmp_path):
    """Write bytes to a fresh ``.pkl`` in tmp_path and return its path."""
    counter = iter(range(1000))

    def write(data: bytes):
        path = tmp_path / f"net{next(counter)}.pkl"
        path.write_bytes(data)
        return path

    return write


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``case``: every preconditioner x architecture in CASES."""
    if "case" in metafunc.fixturenames:
        metafunc.parametrize("case", sorted(CASES))


@pytest.fixture
def kit() -> types.SimpleNamespace:
    """The fixture writers, for test modules (importlib mode cannot import conftest directly)."""
    return types.SimpleNamespace(
        CASES=CASES,
        DDPMPP=DDPMPP,
        NCSNPP=NCSNPP,
        ADM_SMALL=ADM_SMALL,
        make_network=make_network,
        edm_pickle_bytes=edm_format.edm_pickle_bytes,
        edm2_pickle_bytes=edm_format.edm2_pickle_bytes,
        payload_pickle=edm_format.payload_pickle,
        pickle_globals=edm_format.pickle_globals,
        MODULE_SRC_TEMPLATE=MODULE_SRC_TEMPLATE,
    )


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny networks run faster on one thread, and the shared CI machine has two cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
