"""Tiny stand-in components and an in-memory dataset for engine tests and smoke runs.

``toy_plugins()`` loads the installed plugins plus a ``toy`` plugin registering: image_encoder
``toy``, prompt_encoder ``toy``, mask_decoder ``toy``, prompt_generator ``toy_class`` (class
embedding as dense prompt, with a little training noise from torch's global RNG) and loss
``toy_bce`` (BCE that can return NaN at a chosen training call, to test the NaN stop).
A 32x32 model trains in milliseconds per step on one CPU thread.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from samfx import hookimpl
from samfx.config.recipe import load_recipe
from samfx.contracts.interfaces import (
    DecoderInput,
    DecoderOutput,
    ImageEncoder,
    ImageFeatures,
    Loss,
    MaskDecoderBase,
    PromptContext,
    PromptEncoderBase,
    PromptGenerator,
    Prompts,
)
from samfx.contracts.plugins import load_plugins
from samfx.data.store import StoreWriter
from samfx.engine.run import distributed as D
from samfx.engine.train.trainer import Trainer

if TYPE_CHECKING:
    from pathlib import Path

    from samfx.contracts.interfaces import BuildContext
    from samfx.contracts.plugins import Plugins
    from samfx.contracts.registry import PluginRegistrar
    from samfx.engine.train.trainer import Trainer


@dataclass
class ToyEncoderConfig:
    image_size: int = 32
    embed_dim: int = 16


@dataclass
class ToyLossConfig:
    nan_at_call: int = 0      # >0: the n-th training call returns NaN


@dataclass
class ToyEmpty:
    pass


@dataclass
class ToyPromptConfig:
    noise: float = 0.01       # training noise on the dense prompt (global RNG); 0 to disable


@dataclass
class ToyDataConfig:
    train: int = 8            # images per split
    val: int = 4
    test: int = 4
    height: int = 40          # native size (non-square, resized by the datasets)
    width: int = 48
    sequences: int = 1        # test-split sequences of 6 frames (ED 0, ES 3 labeled)


class ToyEncoder(ImageEncoder):
    def __init__(self, image_size: int, embed_dim: int):
        super().__init__()
        self.image_size, self.embed_dim, self.encoder_dim = image_size, embed_dim, embed_dim
        self.embed_size = (image_size // 4, image_size // 4)
        self.stem = nn.Conv2d(3, embed_dim, 4, stride=4)
        self.mix = nn.Conv2d(embed_dim, embed_dim, 1)

    def forward(self, x: Tensor) -> ImageFeatures:
        return ImageFeatures(self.mix(F.gelu(self.stem(x))))


class ToyPromptEncoder(PromptEncoderBase):
    def __init__(self, dim: int, size: tuple[int, int]):
        super().__init__()
        self.no_mask = nn.Parameter(torch.zeros(1, dim, 1, 1))
        self.pe = nn.Parameter(torch.randn(1, dim, *size) * 0.1)

    def get_dense_pe(self) -> Tensor:
        return self.pe

    def forward(self, points: Any = None, boxes: Any = None, masks: Any = None) -> tuple[Tensor, Tensor]:
        if points is not None or boxes is not None or masks is not None:
            raise ValueError("the toy prompt encoder takes no points, boxes or masks")
        return self.pe.new_zeros(1, 0, self.pe.shape[1]), self.no_mask.expand(1, -1, *self.pe.shape[-2:])


class ToyDecoder(MaskDecoderBase):
    def __init__(self, dim: int):
        super().__init__()
        self.transformer_dim = dim
        self.conv = nn.Conv2d(dim, dim, 3, padding=1)
        self.head = nn.Conv2d(dim, 1, 1)
        self.tokens = nn.Parameter(torch.zeros(5, dim))

    def output_tokens(self) -> Tensor:
        return self.tokens

    def forward(self, inp: DecoderInput) -> DecoderOutput:
        emb = inp.features.embedding.repeat_interleave(inp.queries_per_image, dim=0)
        x = F.gelu(self.conv(emb + inp.image_pe + inp.dense))
        low = F.interpolate(self.head(x), scale_factor=4, mode="bilinear", align_corners=False)
        return DecoderOutput(low, torch.sigmoid(low.mean((2, 3))))


class ToyClassPrompt(PromptGenerator):
    def __init__(self, dim: int, num_classes: int, noise: float = 0.01):
        super().__init__()
        self.embed = nn.Embedding(num_classes + 1, dim)
        self.noise = noise

    def forward(self, ctx: PromptContext) -> Prompts:
        sparse, dense = ctx.prompt_encoder.encode(ctx.num_queries)
        dense = dense + self.embed(ctx.class_ids)[:, :, None, None]
        if self.training and self.noise:  # consumes the global RNG like simulated clicks do
            dense = dense + self.noise * torch.randn(dense.shape[0], dense.shape[1], 1, 1, device=dense.device)
        return Prompts(sparse, dense)


class ToyBCE(Loss):
    def __init__(self, nan_at_call: int = 0):
        super().__init__()
        self.nan_at_call, self.calls = nan_at_call, 0

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        loss = F.binary_cross_entropy_with_logits(logits.float(), targets.float())
        if torch.is_grad_enabled():
            self.calls += 1
            if self.calls == self.nan_at_call:
                return loss * float("nan")
        return loss


def _encoder(cfg: ToyEncoderConfig, ctx: BuildContext) -> ToyEncoder:
    return ToyEncoder(cfg.image_size, cfg.embed_dim)


def _prompt_encoder(cfg: ToyEmpty, ctx: BuildContext) -> ToyPromptEncoder:
    return ToyPromptEncoder(ctx.embed_dim, ctx.embed_size)


def _decoder(cfg: ToyEmpty, ctx: BuildContext) -> ToyDecoder:
    return ToyDecoder(ctx.embed_dim)


def _class_prompt(cfg: ToyPromptConfig, ctx: BuildContext) -> ToyClassPrompt:
    return ToyClassPrompt(ctx.embed_dim, ctx.num_classes, cfg.noise)


def _loss(cfg: ToyLossConfig, ctx: BuildContext) -> ToyBCE:
    return ToyBCE(cfg.nan_at_call)


class ToyDataSource:
    """A small samfx HDF5 store of ToyShapes images (written once into the cache folder)."""

    def __init__(self, cfg: ToyDataConfig):
        self.cfg = cfg

    def path(self, cache_dir: str) -> Path:
        from pathlib import Path

        c = self.cfg
        out = Path(cache_dir) / f"toy2-{c.train}-{c.val}-{c.test}-{c.height}x{c.width}-{c.sequences}.h5"
        if out.exists():
            return out
        shapes = ToyShapes(n=c.train + c.val + c.test + 6 * c.sequences, size=max(c.height, c.width),
                           patients=10**6)
        sizes = {"train": c.train, "val": c.val, "test": c.test}
        with StoreWriter(out, [1, 2, 3], ["LV", "MYO", "LA"], source="toy") as w:
            k = 0
            for split, n in sizes.items():
                for i in range(n):
                    item = shapes[k]
                    img = (item["image"][0].numpy()[: c.height, : c.width] * 255).astype(np.uint8)
                    lab = item["label"].numpy()[: c.height, : c.width].astype(np.uint8)
                    w.add_image(f"{split}{i}", img, lab, patient=f"{split}-p{i // 2}", view="4CH",
                                phase="ED" if i % 2 else "ES", spacing=(0.3, 0.2))
                    w.set_split(split, patients=[f"{split}-p{i // 2}"])
                    k += 1
            for q in range(c.sequences):
                frames = [shapes[k + t] for t in range(6)]
                k += 6
                fr = np.stack([(f["image"][0].numpy()[: c.height, : c.width] * 255).astype(np.uint8)
                               for f in frames])
                lab = np.stack([f["label"].numpy()[: c.height, : c.width].astype(np.uint8) for f in frames])
                labeled = np.array([t in (0, 3) for t in range(6)])
                lab[~labeled] = 0
                w.add_sequence(f"seq{q}", fr, lab, labeled, patient=f"test-seq{q}", view="4CH",
                               spacing=(0.3, 0.2), ed=0, es=3)
                w.set_split("test", patients=[f"test-seq{q}"])
        return out


def _data(cfg: ToyDataConfig, ctx: BuildContext) -> ToyDataSource:
    return ToyDataSource(cfg)


class ToyPlugin:
    @hookimpl
    def samfx_register(self, registry: PluginRegistrar) -> None:
        registry.add("image_encoder", "toy", _encoder, schema=ToyEncoderConfig, description="test encoder")
        registry.add("prompt_encoder", "toy", _prompt_encoder, schema=ToyEmpty, description="test")
        registry.add("mask_decoder", "toy", _decoder, schema=ToyEmpty, description="test")
        registry.add("prompt_generator", "toy_class", _class_prompt, schema=ToyPromptConfig, description="test")
        registry.add("loss", "toy_bce", _loss, schema=ToyLossConfig, description="test")
        registry.add("dataset", "toy_data", _data, schema=ToyDataConfig,
                     description="test store")


def toy_plugins() -> Plugins:

    return load_plugins(extra={"toy": ToyPlugin()})


class ToyShapes(torch.utils.data.Dataset[dict[str, Any]]):
    """In-memory echo-like items in ImageDataset's format: LV ellipse (1), MYO ring (2), LA (3).

    Geometry is fixed per index; ``augment`` adds noise from torch's global RNG (as a dataset with
    random augmentation would), which the trainer makes depend on (seed, epoch, index) only.
    """

    def __init__(self, n: int = 8, size: int = 32, seed: int = 0, augment: bool = False, patients: int = 4):
        self.n, self.size, self.seed, self.augment, self.patients = n, size, seed, augment, patients

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict[str, Any]:
        s = self.size
        rng = np.random.default_rng((self.seed, index))
        yy, xx = np.mgrid[:s, :s] / s
        cy, cx = 0.4 + 0.1 * rng.random(), 0.45 + 0.1 * rng.random()
        ry, rx = 0.18 + 0.05 * rng.random(), 0.12 + 0.04 * rng.random()
        r = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
        label = np.zeros((s, s), np.int64)
        label[(r > 1) & (r <= 1.8)] = 2
        label[r <= 1] = 1
        la = ((yy - cy - ry - 0.15) / 0.1) ** 2 + ((xx - cx) / 0.12) ** 2 <= 1
        label[la & (label == 0)] = 3
        img = np.where(label == 2, 0.8, np.where(label == 0, 0.3, 0.05)) + 0.1 * rng.standard_normal((s, s))
        image = torch.from_numpy(img.astype(np.float32)).clamp(0, 1)
        if self.augment:
            image = (image + 0.05 * torch.randn_like(image)).clamp(0, 1)
        return {"image": image.expand(3, s, s).clone(), "label": torch.from_numpy(label),
                "spacing": torch.tensor([0.5, 0.4], dtype=torch.float64), "index": index,
                "patient": f"toy{index % self.patients:03d}", "view": "4CH", "phase": "ED" if index % 2 else "ES"}


def main(argv: list[str] | None = None) -> None:
    """``python -m samfx.engine.testing RUN_DIR [--resume] [--kill-at-step N] [--memory] [key=value ...]``

    Trains tests/recipes/toy.yaml (or ``--recipe FILE``) with the toy plugin; ``--kill-at-step N``
    SIGKILLs this process right after optimizer step N (no clean-up, like a crash; ``--kill-signal TERM``
    sends SIGTERM instead); ``--memory``
    uses in-memory ToyShapes instead of the toy HDF5 store. Works under torchrun.
    """
    import argparse
    import os
    import signal
    from pathlib import Path

    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("overrides", nargs="*")
    ap.add_argument("--recipe", default=str(Path(__file__).resolve().parents[2] / "tests" / "recipes" / "toy.yaml"))
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--kill-at-step", type=int, default=0)
    ap.add_argument("--kill-signal", default="KILL", help="what --kill-at-step sends: KILL, TERM or INT")
    ap.add_argument("--memory", action="store_true")
    args = ap.parse_intermixed_args(argv)
    torch.set_num_threads(1)
    plugins = toy_plugins()
    recipe = load_recipe(args.recipe, args.overrides, plugins.registry)

    def kill(trainer: Trainer, event: str) -> None:
        if event == "step" and trainer.progress.global_step == args.kill_at_step:
            os.kill(os.getpid(), getattr(signal, f"SIG{args.kill_signal}"))

    datasets = None
    if args.memory:
        size = recipe.typed.model.image_encoder["image_size"]
        datasets = {"train": ToyShapes(16, size, seed=1, augment=True), "val": ToyShapes(4, size, seed=2)}

    def fit() -> None:  # the trainer is unreachable once this returns (see D.cleanup)
        Trainer(recipe, args.run_dir, registry=plugins.registry, plugin_versions=plugins.versions(),
                datasets=datasets, resume=args.resume, callbacks=[kill] if args.kill_at_step else []).fit()

    try:
        fit()
    finally:
        D.cleanup()


if __name__ == "__main__":
    main()
