"""EDM pickles are read without running anything from the file, and rebuild the exact network.

Fixtures are written by conftest.py in EDM's persistence format (edm-facts.md Sec. 5.2-5.3) from tiny
networks with random weights: every preconditioner x every architecture.
"""

from __future__ import annotations

import builtins
import hashlib
import io
import os
import pickle
import subprocess

import pytest
import torch

import edmbench
from edmbench.denoisers.native import CheckpointError
from edmbench.denoisers.pickles import ALLOWED_GLOBALS, UnsafePickleError, load_edm_pickle, read_edm_pickle
from edmbench.denoisers.precond import EDMPrecond

# globals a plain pickle.dump of EDM modules produces with this torch/numpy (verified by disassembly below)
FIXTURE_GLOBALS = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"),
    ("torch.nn.modules.container", "ModuleDict"),
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch.storage", "_load_from_bytes"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "dtype"),
}


def inputs(net, batch: int = 3):
    g = torch.Generator().manual_seed(123)
    c, r = net.img_channels, net.img_resolution
    x = torch.randn(batch, c, r, r, generator=g)
    sigma = torch.tensor([0.03, 1.0, 40.0][:batch])
    labels = torch.eye(net.label_dim)[torch.randint(net.label_dim, (batch,), generator=g)]
    augment = torch.randn(batch, 9, generator=g)
    return x, sigma, labels, augment


def test_fixture_loads_and_matches_its_network(case, kit, write_pickle, tmp_path) -> None:
    cls, cfg = kit.CASES[case]
    net = kit.make_network(cls, cfg)
    marker = tmp_path / "module_src_ran"
    src = kit.MODULE_SRC_TEMPLATE.format(marker=str(marker))
    loaded = load_edm_pickle(write_pickle(kit.edm_pickle_bytes(net, module_src=src)))
    assert type(loaded) is cls and not loaded.training
    assert list(loaded.state_dict()) == list(net.state_dict())
    for k, v in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    x, sigma, labels, augment = inputs(net)
    assert torch.equal(loaded(x, sigma, labels), net(x, sigma, labels))
    assert torch.equal(
        loaded(x, sigma, labels, augment_labels=augment), net(x, sigma, labels, augment_labels=augment)
    )
    assert (loaded.sigma_min, loaded.sigma_max) == (net.sigma_min, net.sigma_max)
    # the embedded source is kept as a hash only: never executed
    assert not marker.exists()
    assert loaded.provenance["module_src_sha256"] == [hashlib.sha256(src.encode()).hexdigest()]


def test_allow_list_matches_the_globals_in_a_real_stream(kit) -> None:
    data = kit.edm_pickle_bytes(kit.make_network(EDMPrecond, kit.NCSNPP))
    found = kit.pickle_globals(data)
    assert found == FIXTURE_GLOBALS
    assert found <= set(ALLOWED_GLOBALS)


def test_numpy1_spelling_of_scalar(kit, write_pickle) -> None:
    net = kit.make_network(EDMPrecond, kit.DDPMPP)
    data = kit.edm_pickle_bytes(net, numpy_module="numpy.core.multiarray")
    assert ("numpy.core.multiarray", "scalar") in kit.pickle_globals(data)
    loaded = load_edm_pickle(write_pickle(data))
    x, sigma, labels, _ = inputs(net)
    assert torch.equal(loaded(x, sigma, labels), net(x, sigma, labels))


def test_records_keep_numpy_scalars_and_module_dicts(kit, write_pickle) -> None:
    net = kit.make_network(EDMPrecond, kit.DDPMPP)
    top = read_edm_pickle(write_pickle(kit.edm_pickle_bytes(net)))
    ema = top["ema"]
    assert ema.class_name == "EDMPrecond" and top["dataset_kwargs"]["resolution"] == 8
    enc = ema.state["_modules"]["model"].state["_modules"]["enc"]
    assert enc.class_name == "ModuleDict"
    block = enc.state["_modules"]["4x4_block0"]
    assert block.class_name == "UNetBlock"
    assert float(block.state["skip_scale"]) == 0.5**0.5  # numpy float64 sqrt(0.5), as EDM stores it


@pytest.mark.parametrize(
    "func, args, name",
    [
        (os.system, ("touch {marker}",), ("os", "system")),
        (os.system, ("touch {marker}",), ("posix", "system")),
        (builtins.eval, ("__import__('pathlib').Path({marker!r}).touch()",), ("builtins", "eval")),
        (subprocess.Popen, (["touch", "{marker}"],), ("subprocess", "Popen")),
    ],
)
def test_foreign_globals_are_refused_and_nothing_runs(func, args, name, kit, write_pickle, tmp_path) -> None:
    marker = tmp_path / "pwned"
    args = tuple(
        [a.format(marker=str(marker)) for a in arg]
        if isinstance(arg, list)
        else arg.format(marker=str(marker))
        for arg in args
    )
    data = kit.payload_pickle(func, args, name)
    path = write_pickle(data)
    with pytest.raises(UnsafePickleError, match=rf"refused to load global {name[0]}\.{name[1]}"):
        edmbench.load(path)
    assert not marker.exists()
    if func is os.system:  # control: the payload is live, a plain unpickler would run it
        pickle.loads(data)
        assert marker.exists()


def test_payload_hidden_in_a_tensor_storage_is_refused(kit, write_pickle, tmp_path) -> None:
    marker = tmp_path / "pwned"
    inner = kit.payload_pickle(
        os.system, (f"touch {marker}",), ("os", "system"), protocol=2
    )  # torch.load's own
    data = kit.payload_pickle(torch.storage._load_from_bytes, (inner,), ("torch.storage", "_load_from_bytes"))
    with pytest.raises(UnsafePickleError, match="refused a tensor storage payload"):
        load_edm_pickle(write_pickle(data))
    assert not marker.exists()


def test_truncated_and_corrupt_files_give_clear_errors(kit, write_pickle) -> None:
    data = kit.edm_pickle_bytes(kit.make_network(EDMPrecond, kit.DDPMPP))
    for bad in (data[: len(data) // 2], data[:100], b"", data[:2] + bytes(range(256)) * 4):
        with pytest.raises(CheckpointError, match="corrupt or truncated EDM pickle"):
            load_edm_pickle(write_pickle(bad))


def test_wrong_persistence_version_is_named(kit, write_pickle) -> None:
    data = kit.edm_pickle_bytes(kit.make_network(EDMPrecond, kit.DDPMPP), version=5)
    with pytest.raises(CheckpointError, match="unsupported EDM persistence version 5"):
        load_edm_pickle(write_pickle(data))


def test_config_state_mismatch_and_unknown_class_are_refused(kit, write_pickle) -> None:
    net = kit.make_network(EDMPrecond, kit.DDPMPP)
    net.init_kwargs = dict(net.init_kwargs, model_channels=32)
    with pytest.raises(CheckpointError, match="wrong shape"):
        load_edm_pickle(write_pickle(kit.edm_pickle_bytes(net)))
    net = kit.make_network(EDMPrecond, kit.DDPMPP)
    net.init_kwargs = dict(net.init_kwargs, augment_dim=0)
    with pytest.raises(CheckpointError, match=r"unexpected \['model.map_augment.weight'\]"):
        load_edm_pickle(write_pickle(kit.edm_pickle_bytes(net)))
    net.__class__ = type("SomeFuturePrecond", (EDMPrecond,), {})
    with pytest.raises(CheckpointError, match="unknown preconditioner 'SomeFuturePrecond'; valid: VPPrecond"):
        load_edm_pickle(write_pickle(kit.edm_pickle_bytes(net)))


def test_pickle_without_a_network(write_pickle) -> None:
    buf = io.BytesIO()
    pickle.dump({"loss_fn": None}, buf)
    with pytest.raises(CheckpointError, match="no EDM network found"):
        load_edm_pickle(write_pickle(buf.getvalue()))
