"""The native format (safetensors + JSON config in its header): round trip and refusal of bad files."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

import edmbench
from edmbench.denoisers.native import CheckpointError, load_native, read_native_config, save_native
from edmbench.denoisers.precond import EDMPrecond, VPPrecond, iDDPMPrecond


@pytest.mark.parametrize(
    "cls, arch", [(VPPrecond, "DDPMPP"), (EDMPrecond, "NCSNPP"), (iDDPMPrecond, "ADM_SMALL")]
)
def test_round_trip_is_exact(cls, arch, kit, tmp_path) -> None:
    net = kit.make_network(cls, getattr(kit, arch))
    path = save_native(net, tmp_path / "net.safetensors", provenance={"trained_on": "digits"})
    assert not list(tmp_path.glob("*.part"))
    config = read_native_config(path)
    assert config["class_name"] == cls.__name__ and config["init_kwargs"] == net.init_kwargs
    assert config["provenance"] == {"trained_on": "digits"}
    loaded = load_native(path)
    assert type(loaded) is cls and loaded.provenance == {"trained_on": "digits"}
    x, sigma, labels = torch.randn(3, 3, 8, 8), torch.tensor([0.01, 1.0, 70.0]), torch.eye(10)[:3]
    assert torch.equal(loaded(x, sigma, labels), net(x, sigma, labels))
    assert torch.equal(edmbench.load(path)(x, sigma, labels), net(x, sigma, labels))


def test_one_channel_8x8_conditional_and_unconditional(kit, tmp_path) -> None:
    """The embedded default's shape: img_channels=1, 8x8, channel_mult [1,2], attention at 4x4."""
    for label_dim in (0, 10):
        net = kit.make_network(EDMPrecond, kit.DDPMPP, label_dim=label_dim, img_channels=1)
        path = save_native(net, tmp_path / f"d{label_dim}.safetensors")
        x = torch.randn(4, 1, 8, 8)
        labels = torch.eye(10)[:4] if label_dim else None
        out = edmbench.load(path)(x, torch.tensor([0.002, 0.1, 1.0, 80.0]), labels)
        assert out.shape == (4, 1, 8, 8) and out.dtype == torch.float32 and torch.isfinite(out).all()


def test_channels_last_load_option(kit, tmp_path) -> None:
    net = kit.make_network(EDMPrecond, kit.NCSNPP)
    path = save_native(net, tmp_path / "n.safetensors")
    x = torch.randn(2, 3, 8, 8)
    fast = edmbench.load(path, channels_last=True)
    torch.testing.assert_close(fast(x, 2.0), net(x, 2.0), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="CUDA only"):
        edmbench.load(path, dtype=torch.bfloat16)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            edmbench.load(path, device="cuda")


def test_bad_native_files_are_refused(kit, tmp_path) -> None:
    net = kit.make_network(EDMPrecond, kit.DDPMPP)
    path = save_native(net, tmp_path / "n.safetensors")
    data = path.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_native(truncated)
    header_cut = tmp_path / "header.safetensors"
    header_cut.write_bytes(data[:40])
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_native(header_cut)
    state = net.state_dict()
    bare = tmp_path / "bare.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(bare))
    with pytest.raises(CheckpointError, match="without an edmbench config"):
        load_native(bare)
    header = {"format": "edmbench-native", "version": 99, **net.config}
    future = tmp_path / "future.safetensors"
    save_file(
        {k: v.contiguous() for k, v in state.items()}, str(future), metadata={"edmbench": json.dumps(header)}
    )
    with pytest.raises(CheckpointError, match="version 99"):
        load_native(future)
    header["version"] = 1
    partial = tmp_path / "partial.safetensors"
    kept = {k: v.contiguous() for k, v in state.items() if k != "model.map_layer1.bias"}
    save_file(kept, str(partial), metadata={"edmbench": json.dumps(header)})
    with pytest.raises(CheckpointError, match=r"missing \['model.map_layer1.bias'\], unexpected \[\]"):
        load_native(partial)
    with pytest.raises(TypeError, match="edmbench preconditioner"):
        save_native(torch.nn.Linear(2, 2), tmp_path / "x.safetensors")


def test_parameter_estimate_is_exact_for_song_unet_and_edm2() -> None:
    """Oracle: the count of a real build (skip_init) equals the quadratic estimate from three tiny probes."""
    from edmbench.denoisers.layers import skip_init
    from edmbench.denoisers.native import estimate_parameters
    from edmbench.denoisers.precond import build_precond

    configs = [
        ("EDMPrecond", dict(img_resolution=16, img_channels=3, label_dim=10, model_channels=32,
                            model_type="SongUNet", channel_mult=[1, 2, 3], num_blocks=2, attn_resolutions=[8],
                            augment_dim=9)),
        ("VEPrecond", dict(img_resolution=16, img_channels=1, label_dim=0, model_channels=28,
                           channel_mult=[2, 2], num_blocks=1, attn_resolutions=[8], embedding_type="fourier",
                           encoder_type="residual", channel_mult_noise=2, resample_filter=[1, 3, 3, 1])),
        ("Precond", dict(img_resolution=16, img_channels=4, label_dim=10, model_channels=64,
                         channel_mult=[1, 2], num_blocks=1, attn_resolutions=[8])),
    ]
    for name, cfg in configs:
        with skip_init():
            real = sum(v.numel() for v in build_precond(name, cfg).state_dict().values())
        assert estimate_parameters(name, cfg) == real, name
    # ADM (DhariwalUNet) has 64 channels per attention head, so the tiny probes lack attention: the
    # estimate is low by at most the attention weights (instantiate allows a factor of 2)
    cfg = dict(img_resolution=16, img_channels=3, label_dim=10, model_type="DhariwalUNet", model_channels=64,
               channel_mult=[1, 2], num_blocks=1, attn_resolutions=[8, 4])
    with skip_init():
        real = sum(v.numel() for v in build_precond("EDMPrecond", cfg).state_dict().values())
    assert real / 2 < estimate_parameters("EDMPrecond", cfg) < real


def test_network_size_cap_argument_and_environment(kit, tmp_path, monkeypatch) -> None:
    from edmbench.errors import LimitError

    net = kit.make_network(EDMPrecond, kit.DDPMPP)
    path = save_native(net, tmp_path / "net.safetensors")
    count = sum(v.numel() for v in net.state_dict().values())
    with pytest.raises(LimitError, match=f"holds {count:,} tensor elements, above the limit of 1,000"):
        load_native(path, max_parameters=1000)
    monkeypatch.setenv("EDMBENCH_MAX_PARAMETERS", "1000")
    with pytest.raises(LimitError, match="EDMBENCH_MAX_PARAMETERS"):
        edmbench.load(path)
    assert load_native(path, max_parameters=count) is not None  # the argument wins over the variable


def test_non_finite_weights_are_refused_unless_allowed(kit, tmp_path, monkeypatch) -> None:
    from edmbench.errors import NonFiniteWeightsError

    net = kit.make_network(EDMPrecond, kit.DDPMPP)
    with torch.no_grad():
        next(net.parameters()).view(-1)[0] = float("inf")
    path = save_native(net, tmp_path / "net.safetensors")
    with pytest.raises(NonFiniteWeightsError, match="hold NaN or infinity.*allow_nonfinite=True"):
        edmbench.load(path)
    with pytest.warns(UserWarning, match="NaN or infinity"):
        loaded = edmbench.load(path, allow_nonfinite=True)
    assert not torch.isfinite(next(loaded.parameters())).all()
    monkeypatch.setenv("EDMBENCH_ALLOW_NONFINITE", "1")
    with pytest.warns(UserWarning):
        edmbench.load(path)
