"""The APG in pure torch: fake decoder tokens and embeddings, no SAM needed."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from samfx.contracts.errors import CheckpointError, RecipeError, SamfxError
from samfx.contracts.interfaces import BuildContext, ImageFeatures, MaskDecoderBase, PromptContext, PromptEncoderBase
from samfx.model.trainable import count_params
from samfx_plugins.apg.config import APGConfig
from samfx_plugins.apg.io import extract_from_state, load_apg, read_apg, save_apg
from samfx_plugins.apg.module import AutoPromptGenerator, PaperCombine, build_apg, softmax1_attention

torch.set_num_threads(1)
REFERENCE_PARAMS = 8_861_312      # the SAMUS authors' APG (8.49M) + dense-prompt convs (0.37M)
PAPER_PARAMS = 6_225_280
DENSE_PARAMS = 369_536


class FakeDecoder(MaskDecoderBase):
    def __init__(self, dim: int, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.tokens = nn.Parameter(torch.randn(5, dim, generator=g))

    def output_tokens(self):
        return self.tokens


def ctx_for(dim=32, b=2, hw=4, classes=None, seed=1):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(b, dim, hw, hw, generator=g)
    cls = torch.ones(b, dtype=torch.long) if classes is None else torch.tensor(classes)
    return PromptContext(ImageFeatures(emb), torch.zeros(1, dim, hw, hw), PromptEncoderBase(), FakeDecoder(dim), 64,
                         cls)


def small(form="paper", dim=32, **kw):
    torch.manual_seed(0)
    return AutoPromptGenerator(dim, form=form, tokens=kw.pop("tokens", 6), mlp_dim=kw.pop("mlp_dim", 48), **kw)


def test_parameter_counts_at_width_256():
    ref, paper = AutoPromptGenerator(256, form="reference"), AutoPromptGenerator(256, form="paper")
    assert count_params(ref) == (REFERENCE_PARAMS, REFERENCE_PARAMS)
    assert count_params(ref.dense)[0] == DENSE_PARAMS
    assert count_params(paper)[0] == PAPER_PARAMS
    three = AutoPromptGenerator(256, form="reference", tasks=3)
    assert count_params(three)[0] == REFERENCE_PARAMS + 2 * 50 * 256


@pytest.mark.parametrize("form,n_sparse", [("paper", 6), ("reference", 1)])
def test_forward_shapes_and_replaced_embedding(form, n_sparse):
    apg, ctx = small(form), ctx_for()
    out = apg(ctx)
    assert out.sparse.shape == (2, n_sparse, 32)
    assert out.dense.shape == (2, 32, 4, 4)
    assert out.features.embedding.shape == ctx.features.embedding.shape
    assert not torch.equal(out.features.embedding, ctx.features.embedding)
    assert all(torch.isfinite(t).all() for t in (out.sparse, out.dense, out.features.embedding))
    assert small(form, sparse_tokens=2)(ctx).sparse.shape == (2, 2, 32)


def test_softmax_plus_one_matches_the_authors_formula():
    q, k, v = torch.randn(2, 3, 5, 4), torch.randn(2, 3, 7, 4), torch.randn(2, 3, 7, 4)
    s = q @ k.transpose(-1, -2) / 2.0
    w = s.exp() / (s.amax(-1, keepdim=True).exp() + s.exp().sum(-1, keepdim=True))  # max taken before the +1
    torch.testing.assert_close(softmax1_attention(q, k, v), w @ v)


def test_paper_combine_matches_equation():
    c = PaperCombine(8, 16)
    a, b = torch.randn(2, 3, 8), torch.randn(2, 5, 8)
    att = torch.softmax(c.q(a) @ c.k(b).transpose(-1, -2) / 8 ** 0.5, -1) @ c.v(b)
    torch.testing.assert_close(c(a, b), c.mlp.lin2(torch.relu(c.mlp.lin1(att))))


def test_paper_literal_equations():
    """residual: false reproduces F_i' = C(C(F_i,T), C(T,F_i)), T' = C(C(T,F_i), C(F_i,T)), P_s = T'[:k]."""
    apg, ctx = small("paper", residual=False), ctx_for(b=1)
    tm, im = apg.token_mixer, apg.image_mixer
    t_t, t_o = apg.task_tokens, ctx.mask_decoder.tokens[None]
    c1, c2 = tm.a_blocks[0](t_t, t_o), tm.b_blocks[0](t_o, t_t)
    t_t1 = apg.proj(tm.a_blocks[1](c1, c2)) + t_t
    t_o1 = apg.proj(tm.b_blocks[1](c2, c1)) + t_o
    big_t = torch.cat([t_t1, t_o1], 1)
    f = ctx.features.embedding.flatten(2).transpose(1, 2)
    c5, c6 = im.a_blocks[0](f, big_t), im.b_blocks[0](big_t, f)
    f_new, t_new = im.a_blocks[1](c5, c6), im.b_blocks[1](c6, c5)
    out = apg(ctx)
    torch.testing.assert_close(out.features.embedding, f_new.transpose(1, 2).reshape(1, 32, 4, 4))
    torch.testing.assert_close(out.sparse, t_new[:, :6])
    torch.testing.assert_close(out.dense, apg.dense(out.features.embedding))
    # default (residual) form adds F_i and T back
    apg.residual = True
    torch.testing.assert_close(apg(ctx).features.embedding, ctx.features.embedding
                               + f_new.transpose(1, 2).reshape(1, 32, 4, 4))


def test_reference_discards_output_token_update_and_uses_first_token():
    apg, ctx = small("reference"), ctx_for()
    out = apg(ctx)
    (out.sparse.sum() + out.dense.sum()).backward()
    no_grad = {n for n, p in apg.named_parameters() if p.grad is None}
    assert no_grad and all(n.startswith("token_mixer.b_blocks.1.") for n in no_grad)
    assert apg.sparse_tokens == 1
    paper = small("paper")
    o = paper(ctx)
    (o.sparse.sum() + o.dense.sum()).backward()
    assert all(p.grad is not None for p in paper.parameters())


def test_frozen_decoder_tokens_get_no_grad_but_task_tokens_do():
    apg, ctx = small("paper"), ctx_for()
    ctx.mask_decoder.tokens.requires_grad_(False)
    apg(ctx).dense.sum().backward()
    assert ctx.mask_decoder.tokens.grad is None
    assert apg.task_tokens.grad is not None and apg.task_tokens.grad.abs().sum() > 0


def test_task_sets_by_class():
    apg = small("paper", tasks=3)
    ctx = ctx_for(b=3, classes=[1, 2, 3])
    ctx.features, ctx.queries_per_image = ImageFeatures(ctx.features.embedding[:1]), 3  # one image, 3 classes
    before = apg(ctx)
    assert not torch.allclose(before.sparse[0], before.sparse[1])
    with torch.no_grad():
        apg.task_tokens[0].add_(1.0)              # set 1 drives class 1 only
    after = apg(ctx)
    assert not torch.allclose(after.sparse[0], before.sparse[0])
    torch.testing.assert_close(after.sparse[1:], before.sparse[1:])
    shared = small("paper", tasks=1)              # one set for 3 classes: 3 identical masks, refused
    with pytest.raises(RecipeError) as err:
        shared(ctx)
    assert str(err.value) == ("prompt 'apg': one task-token set (tasks: 1) would give classes 1, 2, 3 the same "
                              "prompt, hence the same mask; set model.prompt.tasks to the largest class id (one set "
                              "per class), or segment one class (data.classes)")
    single = ctx_for(b=2, classes=[2, 2])          # one class: the shared set is fine
    assert shared(single).sparse.shape[0] == 2


def test_bad_class_id_error():
    apg = small("paper", tasks=3)
    with pytest.raises(RecipeError) as err:
        apg(ctx_for(b=2, classes=[1, 4]))
    assert str(err.value) == ("prompt 'apg': class id 4 has no task-token set (tasks: 3, ids 1..3); set "
                              "model.prompt.tasks to the largest class id")
    with pytest.raises(RecipeError, match="class id 0"):
        apg(ctx_for(b=2, classes=[0, 1]))


def test_bad_configs():
    with pytest.raises(RecipeError, match="form 'papr' is unknown; use one of: paper, reference"):
        AutoPromptGenerator(32, form="papr")
    with pytest.raises(RecipeError, match=r"sparse_tokens must be in 1..tokens \(6\), got 7"):
        AutoPromptGenerator(32, tokens=6, sparse_tokens=7)
    from samfx.config.recipe import load_recipe
    from samfx.contracts.plugins import get_registry
    with pytest.raises(RecipeError, match=r"model.prompt.tasks: must be >= 1 \(1 shares one task-token set\), got 0"):
        load_recipe(None, ["model.prompt={name: apg, tasks: 0}"], registry=get_registry())
    with pytest.raises(RecipeError, match="image embedding has width 16 but this APG was built for 32"):
        small()(ctx_for(dim=16))


def test_save_load_roundtrip_and_build_with_weights(tmp_path):
    src, ctx = small("reference"), ctx_for()
    path = save_apg(src, tmp_path / "apg.pt")
    obj = read_apg(path)
    assert obj["format"] == "samfx-apg" and obj["embed_dim"] == 32 and obj["form"] == "reference"
    assert obj["config"]["tokens"] == 6 and obj["config"]["sparse_tokens"] == 1
    assert not list(tmp_path.glob(".*.tmp"))
    torch.manual_seed(123)
    dst = AutoPromptGenerator(32, form="reference", tokens=6, mlp_dim=48)
    load_apg(dst, path)
    torch.testing.assert_close(dst(ctx).dense, src(ctx).dense)
    built = build_apg(APGConfig(form="reference", tokens=6, mlp_dim=48, weights=str(path)),
                      BuildContext(embed_dim=32))
    torch.testing.assert_close(built(ctx).sparse, src(ctx).sparse)


def test_load_errors(tmp_path):
    path = save_apg(small("paper"), tmp_path / "apg.pt")
    with pytest.raises(CheckpointError) as err:
        load_apg(AutoPromptGenerator(64, tokens=6, mlp_dim=48), path)
    assert str(err.value) == (f"{path}: APG width 32 does not fit this model's prompt width 64; an APG "
                              f"moves only between models whose mask decoders have the same width")
    with pytest.raises(CheckpointError, match="APG saved with form='paper' but this one has form='reference'; "
                                              "set model.prompt.form=paper in the recipe"):
        load_apg(small("reference"), path)
    with pytest.raises(CheckpointError, match="APG saved with tokens=6 but this one has tokens=5"):
        load_apg(small("paper", tokens=5), path)
    with pytest.raises(CheckpointError, match="APG file not found"):
        load_apg(small(), tmp_path / "nope.pt")
    torch.save({"model": {}}, tmp_path / "full.pt")
    with pytest.raises(CheckpointError, match="not a samfx APG file.*export"):
        load_apg(small(), tmp_path / "full.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage")
    with pytest.raises(SamfxError, match="cannot read APG file"):
        load_apg(small(), tmp_path / "junk.pt")


@pytest.mark.parametrize("form", ["paper", "reference"])
def test_extract_from_full_state_infers_config(form):
    src = small(form)
    state = {f"prompt_generators.apg.{k}": v for k, v in src.state_dict().items()}
    state["mask_decoder.x"] = torch.zeros(1)
    payload = extract_from_state(state, "prompt_generators.apg.", None, "ckpt")
    assert payload["config"]["form"] == form and payload["config"]["mlp_dim"] == 48
    assert payload["config"]["tokens"] == 6 and payload["embed_dim"] == 32
    with pytest.raises(CheckpointError, match="no APG weights under 'prompt_generators.other.\\*'"):
        extract_from_state(state, "prompt_generators.other.", None, "ckpt")


def test_per_class_task_tokens_backward_is_bit_reproducible_on_two_threads():
    """Picking each query's task-token set must not use advanced indexing: its backward (index_put_
    with accumulate) sums in a thread-dependent order on CPU, which made the main job's APG stage
    differ run to run (~1e-7) with 2 threads."""
    apg = small("paper", dim=64, tasks=3, tokens=50)   # large enough for torch to split the sum over threads
    ctx = ctx_for(dim=64, b=48, hw=2, classes=[1, 2, 3] * 16)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        grads = []
        for _ in range(6):
            apg.zero_grad(set_to_none=True)
            out = apg(ctx)
            (out.sparse.square().sum() + out.dense.sum()).backward()
            grads.append(apg.task_tokens.grad.clone())
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(g, grads[0]) for g in grads[1:])
