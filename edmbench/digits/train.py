"""Train the embedded default: a small EDM-preconditioned SongUNet (DDPM++) on the digits train split.

EDM's loss (Karras et al. 2022, Sec. 5 and Table 1): ln sigma ~ N(P_mean, P_std^2),
L = lambda(sigma) ||D(y + n; sigma) - y||^2 with lambda = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2,
Adam with a linear learning-rate ramp, and an exponential moving average of the weights whose half-life
ramps up with the number of images seen (EDM ``training_loop.py``). The EMA network is what ships.

    python -m edmbench.digits.train --variant uncond --out pretrained/digits-edm-uncond.safetensors
    python -m edmbench.digits.train --variant cond   --out pretrained/digits-edm-cond.safetensors

Runs on one CPU thread by default; the recipe's defaults are the shipped models' recipe.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from dataclasses import asdict, dataclass, field, replace

import torch
from torch import Tensor, nn

from edmbench.digits.data import IMAGE_SHAPE, NUM_CLASSES, SPLIT_SEED, load_split

VARIANTS = ("uncond", "cond")
# Default iterations per variant. The unconditional model stops at the minimum of its held-out EDM loss
# (0.3375 at 3,750 of a 6,000-iteration run, logged in the provenance history; 0.342 at 6,000); the
# conditional model's held-out loss was still level at 6,000.
DEFAULT_ITERATIONS = {"uncond": 3750, "cond": 6000}


@dataclass(frozen=True)
class Recipe:
    """Every science knob of one training run (recorded in the shipped file's provenance)."""

    variant: str = "uncond"
    iterations: int | None = None  # None: DEFAULT_ITERATIONS[variant]
    batch_size: int = 128
    lr: float = 2e-3
    lr_rampup_iters: int = 200
    p_mean: float = -1.2
    p_std: float = 1.2
    sigma_data: float = 0.75  # std of the train split in [-1, 1] is 0.753 (data.py; measured)
    ema_halflife_images: int = 50_000
    ema_rampup_ratio: float = 0.05
    seed: int = 0
    network: dict = field(default_factory=lambda: dict(
        model_type="SongUNet", model_channels=32, channel_mult=[1, 1], channel_mult_emb=2, num_blocks=2,
        attn_resolutions=[4], dropout=0.1, embedding_type="positional", encoder_type="standard",
        decoder_type="standard", channel_mult_noise=1, resample_filter=[1, 1]))

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown variant {self.variant!r}; valid: {', '.join(VARIANTS)}")
        if self.iterations is None:
            object.__setattr__(self, "iterations", DEFAULT_ITERATIONS[self.variant])
        for name in ("iterations", "batch_size", "ema_halflife_images"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.lr <= 0 or self.sigma_data <= 0 or self.p_std <= 0:
            raise ValueError("lr, sigma_data and p_std must be positive")

    @property
    def label_dim(self) -> int:
        return NUM_CLASSES if self.variant == "cond" else 0


def build_network(recipe: Recipe) -> nn.Module:
    """The EDMPrecond(SongUNet) of the recipe, freshly initialised from the global torch seed."""
    from edmbench.denoisers.precond import EDMPrecond

    return EDMPrecond(img_resolution=IMAGE_SHAPE[1], img_channels=IMAGE_SHAPE[0], label_dim=recipe.label_dim,
                      sigma_data=recipe.sigma_data, **recipe.network)


def edm_loss(net: nn.Module, images: Tensor, labels: Tensor | None, recipe: Recipe,
             generator: torch.Generator) -> Tensor:
    """EDM's loss: mean of lambda(sigma) (D(y + n; sigma) - y)^2, ln sigma ~ N(P_mean, P_std^2)."""
    rnd = torch.randn(images.shape[0], 1, 1, 1, generator=generator)
    sigma = (rnd * recipe.p_std + recipe.p_mean).exp()
    weight = (sigma ** 2 + recipe.sigma_data ** 2) / (sigma * recipe.sigma_data) ** 2
    noise = torch.randn(images.shape, generator=generator) * sigma
    denoised = net(images + noise, sigma.flatten(), labels)
    return (weight * (denoised - images) ** 2).mean()


def ema_beta(recipe: Recipe, images_seen: int) -> float:
    """EMA decay per step: half-life min(halflife, rampup_ratio * images_seen) images (EDM training loop)."""
    halflife = min(recipe.ema_halflife_images, recipe.ema_rampup_ratio * images_seen)
    return 0.5 ** (recipe.batch_size / max(halflife, 1e-8))


@torch.no_grad()
def update_ema(ema: nn.Module, net: nn.Module, beta: float) -> None:
    for p_ema, p_net in zip(ema.parameters(), net.parameters(), strict=True):
        p_ema.copy_(p_net.detach().lerp(p_ema, beta))


@torch.no_grad()
def held_out_loss(net: nn.Module, recipe: Recipe, repeats: int = 4) -> float:
    """EDM loss on the held-out split with fixed noise (seed 1234), in eval mode (no dropout)."""
    held = load_split("held_out")
    labels = held.one_hot() if recipe.label_dim else None
    gen = torch.Generator().manual_seed(1234)
    was_training = net.training
    net.eval()
    loss = sum(float(edm_loss(net, held.images, labels, recipe, gen)) for _ in range(repeats)) / repeats
    net.train(was_training)
    return loss


def train(recipe: Recipe, log=print, checkpoint=None, log_every: int = 250) -> tuple[nn.Module, dict]:
    """Run the recipe; returns the EMA network (eval mode) and its training record.

    Every ``log_every`` iterations the held-out loss is logged and ``checkpoint(ema, iterations, record)``
    is called. The learning rate and EMA depend only on the iteration count, never on the planned total,
    so the EMA checkpointed at iteration k is exactly what ``iterations=k`` produces.
    """
    torch.manual_seed(recipe.seed)
    gen = torch.Generator().manual_seed(recipe.seed)
    data = load_split("train")
    labels_all = data.one_hot() if recipe.label_dim else None
    net = build_network(recipe).train()
    ema = copy.deepcopy(net).eval().requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=recipe.lr, betas=(0.9, 0.999), eps=1e-8)
    start, cpu_start, running, last_logged, history = time.time(), time.process_time(), 0.0, 0, []
    record = {"wall_time_s": 0.0, "cpu_time_s": 0.0, "history": history}
    for it in range(1, recipe.iterations + 1):
        idx = torch.randint(len(data), (recipe.batch_size,), generator=gen)
        loss = edm_loss(net, data.images[idx], None if labels_all is None else labels_all[idx], recipe, gen)
        for g in opt.param_groups:
            g["lr"] = recipe.lr * min(it / recipe.lr_rampup_iters, 1.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        update_ema(ema, net, ema_beta(recipe, it * recipe.batch_size))
        running += loss.item()
        if it % log_every == 0 or it == recipe.iterations:
            record.update(wall_time_s=round(time.time() - start, 1),
                          cpu_time_s=round(time.process_time() - cpu_start, 1))
            history.append({"iteration": it, "train_loss": round(running / (it - last_logged), 4),
                            "held_out_loss_ema": round(held_out_loss(ema, recipe), 4),
                            "wall_time_s": record["wall_time_s"]})
            running, last_logged = 0.0, it
            log(json.dumps(history[-1]))
            if checkpoint is not None:
                checkpoint(ema, it, record)
    return ema, record


def provenance(recipe: Recipe, record: dict, num_params: int) -> dict:
    """What made the weights: :func:`edmbench.provenance.provenance` (code, versions, device), data,
    split, recipe, iterations, wall time, the command."""
    from edmbench.provenance import provenance as environment

    command = (f"python -m edmbench.digits.train --variant {recipe.variant} --iterations {recipe.iterations} "
               f"--seed {recipe.seed}")
    return {
        **environment(device="cpu", dtype="float32"),
        "dataset": "sklearn.datasets.load_digits (train split)", "split_seed": SPLIT_SEED,
        "recipe": asdict(recipe), "iterations": recipe.iterations, "wall_time_s": record["wall_time_s"],
        "cpu_time_s": record.get("cpu_time_s"), "num_params": num_params, "history": record["history"],
        "weights": "EMA", "command": command,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train the digits EDM model (see module docstring).")
    parser.add_argument("--variant", choices=VARIANTS, default="uncond")
    parser.add_argument("--out", required=True, help="native checkpoint path (.safetensors)")
    parser.add_argument("--iterations", type=int, default=None,
                        help=f"default per variant: {DEFAULT_ITERATIONS}")
    parser.add_argument("--seed", type=int, default=Recipe.seed)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--checkpoint-every", type=int, default=0,
                        help="also write --out every N iterations (N a multiple of 250; 0 = only at the end)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    recipe = Recipe(variant=args.variant, iterations=args.iterations, seed=args.seed)
    from edmbench.denoisers.native import save_native

    def save(ema: nn.Module, iterations: int, record: dict) -> None:
        num_params = sum(p.numel() for p in ema.parameters())
        done = replace(recipe, iterations=iterations)
        save_native(ema, args.out, provenance=provenance(done, record, num_params))
        print(f"saved {args.out}: {iterations} iterations, {num_params} parameters, "
              f"{record['wall_time_s']} s", flush=True)

    def checkpoint(ema: nn.Module, iterations: int, record: dict) -> None:
        every = args.checkpoint_every
        if iterations == recipe.iterations or (every and iterations % every == 0):
            save(ema, iterations, record)

    train(recipe, log=lambda s: print(s, flush=True), checkpoint=checkpoint)


if __name__ == "__main__":
    main()
