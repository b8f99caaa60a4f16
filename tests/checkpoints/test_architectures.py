"""Networks built from each released model's manifest config match the published state dicts exactly.

Oracles: the key/shape/dtype lists in state-dicts/*.txt beside this file (copied from the fact sheet's
shared/reference/state-dicts; one per released configuration, from NVIDIA's own constructors) and the
parameter counts of edm-facts.md Sec. 6.4 / 9.17. Built on the meta device, so no memory is allocated
for the 56M-296M weights.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from edmbench.denoisers.precond import build_precond
from edmbench.pretrained import read_manifest

# the published layouts (key, shape, dtype per released configuration), kept beside the test so it never skips
REFERENCE = Path(__file__).resolve().parent / "state-dicts"

# edm-facts.md Sec. 6.4 "Parameter counts" (NVIDIA's constructors with the released configs)
PUBLISHED_PARAMETERS = {
    "edm-cifar10-32x32-cond-vp": 55_735_299,
    "edm-cifar10-32x32-uncond-vp": 55_733_891,
    "edm-cifar10-32x32-cond-ve": 56_400_643,
    "edm-cifar10-32x32-uncond-ve": 56_397_827,
    "edm-ffhq-64x64-uncond-vp": 61_805_571,
    "edm-ffhq-64x64-uncond-ve": 62_761_091,
    "edm-afhqv2-64x64-uncond-vp": 61_805_571,  # AFHQv2 shares the FFHQ layout (state-dicts/ header)
    "edm-afhqv2-64x64-uncond-ve": 62_761_091,
    "edm-imagenet-64x64-cond-adm": 295_899_267,
}
# which reference listing describes each model (AFHQv2 models share the FFHQ layout)
LISTING = {name: name.replace("afhqv2", "ffhq") for name in PUBLISHED_PARAMETERS}


def read_listing(name: str) -> tuple[list[tuple[str, list[int], str, str]], int, int]:
    """(key, shape, dtype, kind) rows plus the header's parameter and entry counts."""
    rows, params, entries = [], None, None
    for line in (REFERENCE / f"{name}.txt").read_text().splitlines():
        if line.startswith("#"):
            if m := re.search(r"parameters: (\d+); state-dict entries: (\d+)", line):
                params, entries = int(m[1]), int(m[2])
            continue
        key, shape, dtype, kind = line.split("\t")
        rows.append((key, [int(s) for s in re.findall(r"\d+", shape)], dtype, kind))
    return rows, params, entries


def build_meta(name: str) -> torch.nn.Module:
    entry = read_manifest()[name]
    with torch.device("meta"):
        return build_precond(entry.extra["precond"], entry.extra["config"])


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMETERS))
def test_released_config_matches_published_state_dict(name: str) -> None:
    rows, header_params, header_entries = read_listing(LISTING[name])
    net = build_meta(name)
    buffers = {n for n, _ in net.named_buffers()}
    got = [
        (k, list(v.shape), str(v.dtype).removeprefix("torch."), "buffer" if k in buffers else "param")
        for k, v in net.state_dict().items()
    ]
    assert got == rows  # same keys, same order, same shapes, dtypes and parameter/buffer split
    n_params = sum(p.numel() for p in net.parameters())
    assert n_params == PUBLISHED_PARAMETERS[name] == header_params
    assert len(got) == header_entries


def test_cifar10_cond_vp_first_keys() -> None:
    # edm-facts.md Sec. 9.17: "first keys" of edm-cifar10-32x32-cond-vp, in this order, with these shapes
    listed = [
        ("model.map_label.weight", (128, 10)),
        ("model.map_augment.weight", (128, 9)),
        ("model.map_layer0.weight", (512, 128)),
        ("model.enc.32x32_conv.weight", (128, 3, 3, 3)),
    ]
    sd = build_meta("edm-cifar10-32x32-cond-vp").state_dict()
    assert [(k, tuple(v.shape)) for k, v in sd.items() if k in dict(listed)] == listed
    assert list(sd)[0] == "model.map_label.weight"


def test_adm_ends_with_out_conv() -> None:
    # edm-facts.md Sec. 9.17: the ADM ImageNet model ends with model.out_conv.weight (3x192x3x3) (+ its bias)
    keys = list(build_meta("edm-imagenet-64x64-cond-adm").state_dict().items())
    assert [(k, tuple(v.shape)) for k, v in keys[-2:]] == [
        ("model.out_conv.weight", (3, 192, 3, 3)),
        ("model.out_conv.bias", (3,)),
    ]


def test_every_edm_release_is_in_the_manifest_with_its_config() -> None:
    manifest = read_manifest()
    for name in PUBLISHED_PARAMETERS:
        entry = manifest[name]
        assert entry.url == f"https://nvlabs-fi-cdn.nvidia.com/edm/pretrained/{name}.pkl"
        assert entry.extra["precond"] == "EDMPrecond"  # every edm-* model uses EDMPrecond (edm-facts 6.4)
        assert entry.extra["ref_url"].startswith("https://nvlabs-fi-cdn.nvidia.com/edm/fid-refs/")
        assert entry.extra["published"], f"{name} has no published numbers"
        assert entry.extra["parameters"] == PUBLISHED_PARAMETERS[name]


def test_baselines_build_from_their_inferred_configs() -> None:
    manifest = read_manifest()
    baselines = [n for n in manifest if n.startswith("baseline-")]
    assert {
        "baseline-cifar10-32x32-uncond-vp",
        "baseline-cifar10-32x32-uncond-ve",
        "baseline-imagenet-64x64-cond-adm",
    } <= set(baselines)  # the three named in EDM's README
    for name in baselines:
        net = build_meta(name)
        assert type(net).__name__ == manifest[name].extra["precond"]
