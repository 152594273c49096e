"""Frame-aware prompting (docs/temporal.md, "Prompt schedules" and "Tracking by prompting"): the prompt
schedule recipe key, ``PromptContext.frame`` / ``.previous``, the built-in ``prev_mask`` / ``prev_box``
generators, and a third-party ``prev_box`` written against the public contract alone."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from samfx import hookimpl
from samfx.config.recipe import load_recipe
from samfx.config.schedule import prompted_frames
from samfx.contracts.errors import RecipeError, SamfxError
from samfx.contracts.interfaces import DecoderOutput, PromptContext, PromptGenerator, Prompts
from samfx.contracts.plugins import load_plugins
from samfx.model.build import build_model

TINY_SAM = Path(__file__).resolve().parent / "recipes" / "tiny_sam.yaml"


class Recorder(PromptGenerator):
    """Records what it was given per call; prompts nothing (the no-mask embedding)."""

    def __init__(self):
        super().__init__()
        self.calls: list[tuple[int | None, bool, bool]] = []

    def forward(self, ctx: PromptContext) -> Prompts:
        self.calls.append((None if ctx.frame is None else ctx.frame.t, ctx.previous is not None,
                           ctx.targets is not None))
        return Prompts(*ctx.prompt_encoder.encode(ctx.num_queries))


class MyPrevBox(PromptGenerator):
    """A user's tracking-by-prompting generator, from the public contract only: frame 0 by the box of
    the truth, every later frame by the box of the previous frame's mask."""

    needs_targets = True      # on the first frame
    uses_previous = True      # ... only there: later frames come from ctx.previous
    default_schedule = "every"

    def forward(self, ctx: PromptContext) -> Prompts:
        if ctx.previous is None:
            assert ctx.targets is not None, "frame 0 must get the truth"
            mask = ctx.targets[:, 0] > 0.5
            scale = 1.0
        else:
            assert ctx.targets is None, "later frames must not see labels"
            mask = ctx.previous.low_res[:, 0].detach() > 0
            scale = ctx.image_size / mask.shape[-1]
        rows, cols = mask.any(2).float(), mask.any(1).float()
        idx = torch.arange(mask.shape[-1], device=mask.device, dtype=torch.float)
        far = float(mask.shape[-1])
        x0 = torch.where(cols > 0, idx, far).min(1).values
        x1 = torch.where(cols > 0, idx, -1.0).max(1).values
        y0 = torch.where(rows > 0, idx, far).min(1).values
        y1 = torch.where(rows > 0, idx, -1.0).max(1).values
        box = (torch.stack([x0, y0, x1, y1], 1) * scale).clamp(0, ctx.image_size - 1)
        box = torch.where(mask.flatten(1).any(1, keepdim=True), box, torch.full_like(box, ctx.image_size / 2))
        return Prompts(*ctx.prompt_encoder.encode(ctx.num_queries, boxes=box), boxes=box)


class MyPlugin:
    @hookimpl
    def samfx_register(self, registry):
        registry.add("prompt_generator", "my_prev_box", lambda cfg, ctx: MyPrevBox(), description="test")
        registry.add("prompt_generator", "recorder", lambda cfg, ctx: Recorder(), description="test")


@pytest.fixture(scope="module")
def mine():
    return load_plugins(extra={"mine": MyPlugin()})


def _model(mine, *overrides):
    recipe = load_recipe(TINY_SAM, ["model.image_encoder.size=tiny", *overrides], mine.registry)
    torch.manual_seed(0)
    return build_model(recipe, mine.registry).eval()


def _clip(b=1, t=5, s=64):
    g = torch.Generator().manual_seed(1)
    frames = torch.rand(b, t, 3, s, s, generator=g)
    labels = torch.zeros(b, t, s, s, dtype=torch.long)
    for i in range(t):
        labels[:, i, 20 + i:40 + i, 18:42] = 1
    return frames, labels


def _recorded(model, frames, labels, **kw):
    rec = model.prompt_generators["recorder"]
    rec.calls.clear()
    with torch.no_grad():
        model.forward_clip(frames, [1], labels, prompt="recorder", **kw)
    return [c[0] for c in rec.calls]


@pytest.mark.parametrize(("schedule", "expected"), [("first", [0]), ("every", [0, 1, 2, 3, 4]),
                                                    ("ed_es", [1, 3]), ([0, 2, 9], [0, 2])])
def test_each_schedule_prompts_exactly_the_frames_it_names(mine, schedule, expected):
    model = _model(mine, f"model.prompt={{name: recorder, schedule: {schedule}}}")
    frames, labels = _clip()
    keys = torch.tensor([[False, True, False, True, False]])
    assert model.prompt_schedule("recorder") == schedule if schedule != [0, 2, 9] else [0, 2, 9]
    assert _recorded(model, frames, labels, key_frames=keys) == expected


def test_default_schedules_and_the_explicit_override(mine):
    model = _model(mine, "model.prompt={name: recorder}")
    frames, labels = _clip()
    assert model.prompt_schedule() == "every"                      # an automatic generator
    assert _recorded(model, frames, labels, prompt_frames=[3]) == [3]
    clicks = _model(mine, "model.prompt={name: clicks}")
    assert clicks.prompt_schedule() == "first"                     # a simulated user clicks once
    assert _model(mine, "model.prompt={name: prev_mask}").prompt_schedule() == "every"


def test_context_has_the_frame_and_the_previous_output_and_no_labels_for_automatic_prompts(mine):
    model = _model(mine, "model.prompt={name: recorder}")
    frames, labels = _clip(t=3)
    rec = model.prompt_generators["recorder"]
    rec.calls.clear()
    with torch.no_grad():
        model.forward_clip(frames, [1], labels, prompt="recorder")
        model(frames[:, 0], prompt="recorder")                      # an image: no frame, no previous
    assert rec.calls == [(0, False, False), (1, True, False), (2, True, False), (None, False, False)]


def test_ed_es_on_a_batch_whose_key_frames_differ_equals_each_clip_alone(mine):
    model = _model(mine, "model.prompt={name: clicks, schedule: ed_es}")
    frames, labels = _clip(b=2, t=4)
    keys = torch.tensor([[True, False, True, False], [False, True, False, False]])
    with torch.no_grad():
        both = model.forward_clip(frames, [1], labels, key_frames=keys)
        alone = [model.forward_clip(frames[i:i + 1], [1], labels[i:i + 1], key_frames=keys[i:i + 1])
                 for i in range(2)]
    for i in range(2):
        torch.testing.assert_close(both.logits[i], alone[i].logits[0])
        torch.testing.assert_close(both.iou[i], alone[i].iou[0])
    with pytest.raises(SamfxError, match=r"scheduled on the ED and ES frames, but the clips' key_frames"):
        model.forward_clip(frames, [1], labels)


@pytest.mark.parametrize("value, message", [
    ("evry", r"model\.prompt\.schedule \(command line\): 'evry' is not a prompt schedule; use one of first, "
             r"every, ed_es or a list of frame indices, did you mean 'every'\?"),
    ("[-1]", r"expected first, every, ed_es or a non-empty list of frame indices >= 0, got \[-1\]"),
])
def test_schedule_typos_are_one_line_errors(mine, value, message):
    with pytest.raises(RecipeError, match=message):
        load_recipe(TINY_SAM, [f"model.prompt={{name: clicks, schedule: {value}}}"], mine.registry)


def test_schedule_is_only_a_prompt_generators_key(mine):
    with pytest.raises(RecipeError, match=r"model\.mask_decoder\.schedule: unknown key; only a prompt_generator "
                                          r"takes 'schedule'"):
        load_recipe(TINY_SAM, ["model.mask_decoder={name: sam, schedule: first}"], mine.registry)


def _prev_outputs(model, frames, labels, **kw):
    outs = {}
    with torch.no_grad():
        model.forward_clip(frames, [1], labels, on_frame=lambda t, o: outs.__setitem__(t, o), **kw)
    return outs


def test_prev_mask_prompts_each_frame_with_the_previous_logits(mine):
    model = _model(mine, "model.prompt={name: prev_mask}")
    frames, labels = _clip(t=3)
    outs = _prev_outputs(model, frames, labels)
    assert outs[0].prompts.points is not None                      # frame 0: the simulated click
    for t in (1, 2):
        assert outs[t].prompts.points is None
        want = model.prompt_encoder.encode(1, masks=outs[t - 1].decoded.low_res[:, :1])[1]
        torch.testing.assert_close(outs[t].prompts.dense, want)
    none = model.prompt_encoder.encode(1)[1]
    assert not torch.allclose(outs[1].prompts.dense, none)


def test_prev_mask_drops_the_prompt_below_the_iou_threshold(mine):
    model = _model(mine, "model.prompt={name: prev_mask, min_iou: 1.0}")   # no prediction is that sure
    frames, labels = _clip(t=2)
    outs = _prev_outputs(model, frames, labels)
    assert float(outs[0].decoded.iou.max()) < 1.0
    torch.testing.assert_close(outs[1].prompts.dense, model.prompt_encoder.encode(1)[1].expand(1, -1, -1, -1))


def test_prev_box_gives_the_box_of_the_previous_mask(mine):
    model = _model(mine, "model.prompt={name: prev_box, first: boxes}")
    frames, labels = _clip(t=2)
    outs = _prev_outputs(model, frames, labels)
    assert outs[0].prompts.boxes.tolist() == [[18.0, 20.0, 41.0, 39.0]]     # frame 0: the truth's box
    low = outs[0].decoded.low_res[0, 0] > 0
    assert low.any(), "the random model predicts nothing: pick another seed"
    ys, xs = torch.nonzero(low, as_tuple=True)
    s = 64 / low.shape[-1]
    want = [float(xs.min()) * s, float(ys.min()) * s, (float(xs.max()) + 1) * s - 1, (float(ys.max()) + 1) * s - 1]
    assert outs[1].prompts.boxes[0].tolist() == pytest.approx([min(v, 63.0) for v in want])


def test_prev_generators_need_labels_on_frame_0_only(mine):
    model = _model(mine, "model.prompt={name: prev_mask}")
    frames, labels = _clip(t=3)
    labeled = torch.tensor([[True, False, False]])
    with torch.no_grad():
        model.forward_clip(frames, [1], labels, labeled)           # frames 1, 2 unlabeled: fine
    with pytest.raises(SamfxError, match=r"prompt 'prev_mask' needs the labels of every frame it prompts from "
                                         r"the truth \(\[0\]\)"):
        model.forward_clip(frames, [1], labels, torch.tensor([[False, True, True]]))


def test_a_third_party_prev_box_trains_one_step_on_clips(mine, tmp_path):
    from samfx.engine.train.trainer import Trainer

    recipe = load_recipe(TINY_SAM, ["model.prompt={name: my_prev_box}", "data.clip_length=3",
                                    "data.batch_size=2", "train.stages.0.max_steps=1", "train.val_every=100",
                                    "train.stages.0.select_metric=train/loss", "eval.overlays=0"],
                         mine.registry)
    result = Trainer(recipe, tmp_path / "run", registry=mine.registry, quiet=True).fit()
    assert result["global_step"] == 1 and math.isfinite(result["last"]["train/loss"])
    model = build_model(recipe, mine.registry).eval()
    frames, labels = _clip(t=3)
    outs = _prev_outputs(model, frames, labels)
    assert [o.prompts.boxes is not None for o in outs.values()] == [True, True, True]


def test_prompted_frames_table():
    assert prompted_frames("first", 3) == [True, False, False]
    assert prompted_frames("every", 2) == [True, True]
    assert prompted_frames("ed_es", 4, [0, 3]) == [True, False, False, True]
    assert prompted_frames([1, 7], 3) == [False, True, False]
    assert isinstance(DecoderOutput, type)


def test_prev_box_drops_to_padding_tokens_below_the_threshold(mine):
    model = _model(mine, "model.prompt={name: prev_box, min_iou: 5.0}")   # no prediction is that sure
    frames, labels = _clip(t=2)
    outs = _prev_outputs(model, frames, labels)
    pad = (torch.zeros(1, 1, 2), torch.full((1, 1), -1))
    torch.testing.assert_close(outs[1].prompts.sparse, model.prompt_encoder.encode(1, points=pad)[0])


def test_automatic_prompts_see_labels_in_training_only(mine):
    model = _model(mine, "model.prompt={name: recorder}")
    frames, labels = _clip(t=1)
    rec = model.prompt_generators["recorder"]
    rec.calls.clear()
    with torch.no_grad():
        model.eval().forward_classes(frames[:, 0], [1], labels[:, 0], prompt="recorder")
        model.train().forward_classes(frames[:, 0], [1], labels[:, 0], prompt="recorder")
    assert [c[2] for c in rec.calls] == [False, True]


def test_show_checks_an_ed_es_schedule_on_a_temporal_model(mine, monkeypatch):
    from samfx.contracts import plugins as pluginmanager
    from samfx.model.summary import summarize

    monkeypatch.setattr(pluginmanager, "_CACHE", mine)
    report = summarize(str(TINY_SAM), ["model.temporal={name: stm, key_dim: 8, value_dim: 8, mask_channels: 4}",
                                       "model.prompt={name: clicks, schedule: ed_es}"])
    assert report["prompt_schedules"]["clicks"] == "ed_es"


def test_clip_training_with_an_ed_es_schedule_gets_each_clips_key_frames(mine, tmp_path):
    from samfx.data.datasets import ClipDataset
    from samfx.engine.run.loaders import store_path
    from samfx.engine.train.trainer import Trainer

    recipe = load_recipe(TINY_SAM, ["model.prompt={name: clicks, schedule: ed_es}", "data.clip_length=3",
                                    "train.stages.0.max_steps=1", "train.val_every=100",
                                    "train.stages.0.select_metric=train/loss", "eval.overlays=0"], mine.registry)
    ds = ClipDataset(store_path(recipe.config["data"]["source"], mine.registry), "train", 64, 3)
    item = ds[0]
    seq = ds.sequences[0]
    assert item["key_frames"].tolist() == [int(i) in (seq.ed, seq.es) for i in item["frame_index"]]
    assert any(bool(ds[i]["key_frames"].any()) for i in range(len(ds)))     # some clips hold ED or ES
    result = Trainer(recipe, tmp_path / "run", registry=mine.registry, quiet=True).fit()
    assert result["global_step"] == 1 and math.isfinite(result["last"]["train/loss"])
