"""The component contract proven by something that is not SAM: a two-level encoder, a decoder that
needs the finer level and emits mask tokens and an object score, and a temporal module that reads
FrameInfo and the decoder's tokens, all registered from a test plugin and trained one step on clips."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from samfx import hookimpl
from samfx.config.recipe import load_recipe
from samfx.contracts.errors import SamfxError
from samfx.contracts.interfaces import (
    BuildContext,
    DecoderInput,
    DecoderOutput,
    FrameInfo,
    ImageEncoder,
    ImageFeatures,
    MaskDecoderBase,
    MemoryReadout,
    TemporalModule,
)
from samfx.engine.testing import ToyEmpty
from samfx.engine.train.trainer import Trainer
from samfx.model.build import build_model

TOY = Path(__file__).parent / "recipes" / "toy.yaml"


@dataclass
class TwoLevelConfig:
    image_size: int = 32
    embed_dim: int = 16


class TwoLevelEncoder(ImageEncoder):
    """Stride-2 level (C/2 channels) and stride-4 embedding (C), with a positional encoding of its own."""

    def __init__(self, image_size: int, dim: int):
        super().__init__()
        self.image_size, self.embed_dim, self.encoder_dim = image_size, dim, dim
        self.embed_size = (image_size // 4, image_size // 4)
        self.high_res_dims = (dim // 2,)
        self.fine = nn.Conv2d(3, dim // 2, 2, stride=2)
        self.coarse = nn.Conv2d(dim // 2, dim, 2, stride=2)
        self.pos = nn.Parameter(torch.randn(1, dim, *self.embed_size) * 0.1)

    def forward(self, x: Tensor) -> ImageFeatures:
        fine = F.gelu(self.fine(x))
        return ImageFeatures(self.coarse(fine), (fine,), self.pos)


class HighResDecoder(MaskDecoderBase):
    """Coarse features + prompts, upsampled and fused with the fine level; one mask token per query."""

    def __init__(self, dim: int, fine_dim: int):
        super().__init__()
        self.transformer_dim = dim
        self.mix = nn.Conv2d(dim, fine_dim, 1)
        self.head = nn.Conv2d(fine_dim, 1, 3, padding=1)
        self.token = nn.Linear(dim, dim)
        self.score = nn.Linear(dim, 1)
        self.tokens = nn.Parameter(torch.zeros(5, dim))

    def output_tokens(self) -> Tensor:
        return self.tokens

    def forward(self, inp: DecoderInput) -> DecoderOutput:
        if len(inp.features.high_res) != 1:
            raise SamfxError("mask_decoder 'high_res': needs the encoder's stride-2 level")
        k = inp.queries_per_image
        coarse = inp.features.embedding.repeat_interleave(k, 0) + inp.dense + inp.image_pe
        fine = inp.features.high_res[0].repeat_interleave(k, 0)
        x = F.interpolate(self.mix(coarse), size=fine.shape[-2:], mode="bilinear", align_corners=False) + fine
        low = self.head(F.gelu(x))
        pooled = coarse.mean((2, 3))
        tokens = self.token(pooled)[:, None]
        return DecoderOutput(low, torch.sigmoid(low.mean((2, 3))), mask_tokens=tokens,
                             object_score=self.score(pooled))


class TokenMemory(TemporalModule):
    """Remembers each query's last mask token, weighted by its object score, as an extra dense prompt;
    prompted frames ignore the memory (FrameInfo.prompted)."""

    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Linear(dim, dim)
        self.seen: list[FrameInfo] = []

    def init_state(self, batch_size: int, device: torch.device) -> dict:
        return {"n": batch_size, "token": None, "t": -1}

    def read(self, state: dict, features: ImageFeatures, frame: FrameInfo) -> MemoryReadout:
        self.seen.append(frame)
        assert features.batch_size * frame.queries_per_image == state["n"]
        if state["token"] is None or frame.prompted:
            return MemoryReadout()
        assert frame.t == state["t"] + 1
        assert features.pos is not None
        return MemoryReadout(dense=self.proj(state["token"])[:, :, None, None] + features.pos)

    def write(self, state: dict, features: ImageFeatures, decoded: DecoderOutput, frame: FrameInfo) -> dict:
        assert decoded.mask_tokens is not None and decoded.object_score is not None
        return {**state, "token": decoded.mask_tokens[:, 0] * torch.sigmoid(decoded.object_score), "t": frame.t}


class ContractPlugin:
    @hookimpl
    def samfx_register(self, registry):
        registry.add("image_encoder", "two_level", lambda c, ctx: TwoLevelEncoder(c.image_size, c.embed_dim),
                     schema=TwoLevelConfig, description="two-level test encoder")
        registry.add("mask_decoder", "high_res", _decoder, schema=ToyEmpty, description="test decoder")
        registry.add("temporal_module", "token_memory", lambda c, ctx: TokenMemory(ctx.embed_dim),
                     schema=ToyEmpty, description="test memory")


def _decoder(cfg: ToyEmpty, ctx: BuildContext) -> HighResDecoder:
    assert ctx.high_res_dims == (ctx.embed_dim // 2,)          # the encoder's levels reach later components
    return HighResDecoder(ctx.embed_dim, ctx.high_res_dims[0])


CLIPS = ["model.image_encoder.name=two_level", "model.mask_decoder.name=high_res",
         "model.temporal.name=token_memory", "data.clip_length=3", "data.train_split=test",
         "data.val_split=test", "data.batch_size=1", "train.stages.0.max_steps=1",
         "train.stages.0.trainable=[image_encoder,mask_decoder,temporal,prompt]", "eval.overlays=0"]


@pytest.fixture(scope="module")
def plugins():
    from samfx.contracts.plugins import load_plugins
    from samfx.engine.testing import ToyPlugin

    return load_plugins(extra={"toy": ToyPlugin(), "contract": ContractPlugin()})


def test_gradients_reach_every_component_through_both_levels_and_the_memory(plugins):
    recipe = load_recipe(TOY, CLIPS, plugins.registry)
    torch.manual_seed(0)
    model = build_model(recipe, plugins.registry)
    frames = torch.rand(2, 3, 3, 32, 32)
    labels = torch.randint(0, 4, (2, 3, 32, 32))
    out = model.forward_clip(frames, [1, 2, 3], labels, prompt_frames=[0])
    assert out.logits.shape == (2, 3, 3, 32, 32) and out.iou.shape == (2, 3, 3)
    F.binary_cross_entropy_with_logits(out.logits, out.targets).backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert no_grad == ["mask_decoder.tokens"]            # only the unused output tokens (no APG here)
    infos = [(f.t, f.num_frames, f.prompted, f.queries_per_image) for f in model.temporal.seen]
    assert infos == [(0, 3, True, 3), (1, 3, False, 3), (2, 3, False, 3)]
    model.temporal.seen.clear()
    model.forward_clip(frames, [1, 2, 3], labels)      # an automatic prompt prompts every frame by default
    assert [f.prompted for f in model.temporal.seen] == [True, True, True]


def test_trains_one_step_on_clips_through_the_engine(plugins, tmp_path):
    recipe = load_recipe(TOY, CLIPS, plugins.registry)
    result = Trainer(recipe, tmp_path / "run", registry=plugins.registry).fit()
    assert result["global_step"] == 1 and math.isfinite(result["last"]["train/loss"])
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=False)["model"]
    assert any(k.startswith("temporal.proj.") for k in state) and "image_encoder.fine.weight" in state


def test_per_image_features_where_per_query_ones_belong_is_a_one_line_error(plugins):
    from samfx.contracts.interfaces import Prompts

    recipe = load_recipe(TOY, [], plugins.registry)
    model = build_model(recipe, plugins.registry)
    gen = model.prompt_generator
    forward = gen.forward

    def per_image(ctx):
        out = forward(ctx)
        return Prompts(out.sparse, out.dense, features=ctx.features)     # batch B, not Q = B*K

    gen.forward = per_image
    with pytest.raises(SamfxError, match=r"prompt generator's Prompts.features has batch 2 but there are 6 "
                                         r"queries; replacement features are per query"):
        model.forward_classes(torch.rand(2, 3, 32, 32), [1, 2, 3])
