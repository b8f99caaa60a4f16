"""A small CNN digits classifier; its penultimate layer defines the FID-digits feature space.

Architecture (input ``[B, 1, 8, 8]`` in [-1, 1]):
conv3x3(1->32) ReLU, conv3x3(32->64) ReLU, maxpool2 (4x4), conv3x3(64->64) ReLU, maxpool2 (2x2),
flatten (256), linear(256->64) = **features** (pre-activation, 64-d), ReLU, dropout, linear(64->10) = logits.

Train with ``python -m edmbench.digits.classifier --out pretrained/digits-classifier.safetensors``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch import Tensor, nn

from edmbench.digits.data import NUM_CLASSES, SPLIT_SEED, from_uint8, load_split
from edmbench.generate import quantize

FEATURE_DIM = 64


class DigitsClassifier(nn.Module):
    """CNN over 8x8 digits; ``features(x)`` is the 64-d penultimate layer, ``forward(x)`` the logits."""

    def __init__(self, dropout: float = 0.2) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
        )
        self.fc1 = nn.Linear(64 * 2 * 2, FEATURE_DIM)
        self.head = nn.Sequential(nn.ReLU(), nn.Dropout(dropout), nn.Linear(FEATURE_DIM, NUM_CLASSES))

    def features(self, x: Tensor) -> Tensor:
        """Penultimate 64-d features of images ``[B, 1, 8, 8]`` in [-1, 1]."""
        if x.ndim != 4 or tuple(x.shape[1:]) != (1, 8, 8):
            raise ValueError(f"expected images [B, 1, 8, 8], got {tuple(x.shape)}")
        return self.fc1(self.conv(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def augment(x: Tensor, generator: torch.Generator) -> Tensor:
    """Random translation by up to one pixel (background -1 fills the border) plus N(0, 0.05^2) noise."""
    padded = nn.functional.pad(x, (1, 1, 1, 1), value=-1.0)
    out = torch.empty_like(x)
    shifts = torch.randint(0, 3, (x.shape[0], 2), generator=generator)
    for i, (dy, dx) in enumerate(shifts.tolist()):
        out[i] = padded[i, :, dy:dy + 8, dx:dx + 8]
    return out + 0.05 * torch.randn(out.shape, generator=generator)


def accuracy(model: DigitsClassifier, images: Tensor, labels: Tensor) -> float:
    """Fraction of ``images`` (float [-1, 1]) classified as ``labels``, in eval mode."""
    model.eval()
    with torch.no_grad():
        return float((model(images).argmax(1) == labels).to(torch.float64).mean())


def train_classifier(epochs: int = 60, batch_size: int = 64, lr: float = 2e-3,
                     seed: int = 0) -> tuple[DigitsClassifier, dict]:
    """Train on the uint8 round trip of the train split (the extractor sees uint8); report accuracy."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    train, held = load_split("train"), load_split("held_out")
    x_train, x_held = from_uint8(quantize(train.images)), from_uint8(quantize(held.images))
    model = DigitsClassifier()
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    start = time.time()
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(train), generator=gen).split(batch_size):
            loss = nn.functional.cross_entropy(model(augment(x_train[idx], gen)), train.labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    info = {
        "dataset": "sklearn.datasets.load_digits", "split_seed": SPLIT_SEED, "seed": seed,
        "epochs": epochs, "batch_size": batch_size, "lr": lr, "wall_s": round(time.time() - start, 1),
        "train_accuracy": accuracy(model, x_train, train.labels),
        "held_out_accuracy": accuracy(model, x_held, held.labels),
        "num_held_out": len(held), "torch": torch.__version__,
    }
    return model.eval(), info


def save_classifier(model: DigitsClassifier, path: str | Path, info: dict) -> None:
    """Weights as safetensors with the training record in the metadata."""
    from safetensors.torch import save_file

    save_file(model.state_dict(), str(path), metadata={"provenance": json.dumps(info)})


def load_classifier(path: str | Path) -> tuple[DigitsClassifier, dict]:
    """Load weights saved by ``save_classifier``; refuses files with missing or extra tensors."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"digits classifier weights not found: {path}")
    with safe_open(str(path), framework="pt") as f:
        info = json.loads((f.metadata() or {}).get("provenance", "{}"))
    model = DigitsClassifier()
    model.load_state_dict(load_file(str(path)), strict=True)
    return model.eval(), info


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="pretrained/digits-classifier.safetensors")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model, info = train_classifier(epochs=args.epochs, seed=args.seed)
    save_classifier(model, args.out, info)
    print(json.dumps(info, indent=1))


if __name__ == "__main__":
    main()
