"""``random-conv``: a tiny deterministic convolutional extractor for tests and benchmarks.

Its weights are drawn from a fixed seed, so it needs no file and no network; its features carry no notion
of image quality. Use it to check and time the metric pipeline (it agrees with torch-fidelity's own
``calculate_metrics`` because both call the same module), never to report a FID. It computes in float64,
so a row's features do not depend on its batch-mates.
"""

from __future__ import annotations

import torch
from torch import nn
from torch_fidelity.feature_extractor_base import FeatureExtractorBase

from edmbench.metrics.features import register_extractor

RANDOM_CONV = "random-conv"
_LAYER = "64"


class RandomConvExtractor(FeatureExtractorBase):
    """uint8 [B,3,H,W] -> (x-128)/128 -> conv3x3/2 (16) -> ReLU -> conv3x3/2 (16) -> ReLU -> 2x2 avg pool
    -> 64 features. Weights: Kaiming-normal from ``torch.Generator().manual_seed(seed)``."""

    def __init__(self, name: str, features_list, seed: int = 0, **kwargs) -> None:
        super().__init__(name, features_list)
        gen = torch.Generator().manual_seed(seed)
        self.net = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(16, 16, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        ).to(torch.float64)
        for layer in self.net:
            if isinstance(layer, nn.Conv2d):
                fan_in = layer.weight[0].numel()
                with torch.no_grad():
                    layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen, dtype=torch.float64)
                                       * (2.0 / fan_in) ** 0.5)
                    layer.bias.copy_(0.1 * torch.randn(layer.bias.shape, generator=gen, dtype=torch.float64))
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected uint8 [B, 3, H, W], got {x.dtype} {tuple(x.shape)}")
        features = self.net((x.to(torch.float64) - 128) / 128).to(torch.float32)
        return (features,)

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return (_LAYER,)

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return _LAYER

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> torch.Tensor:
        return torch.zeros(1, 3, 8, 8, dtype=torch.uint8)


register_extractor(RANDOM_CONV, RandomConvExtractor)
