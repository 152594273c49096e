"""The Auto Prompt Generator (APG) of AutoSAMUS, in two forms (see docs/apg.md).

Inputs are only the mask decoder's output tokens T_o (5,C) and the image embedding F_i (B,C,h,w),
so the APG works with any encoder in front of a SAM-style decoder. Notation follows the paper:

    T_t1 = C(C(T_t,T_o), C(T_o,T_t))·W + T_t     T_o1 = C(C(T_o,T_t), C(T_t,T_o))·W + T_o
    T = [T_t1; T_o1]
    F_i' = C(C(F_i,T), C(T,F_i))                 T' = C(C(T,F_i), C(F_i,T))
    sparse = T'[:k]    dense = M(F_i')    F_i' replaces F_i in the decoder

Both nested pairs are a depth-2 *bidirectional* mixer whose two streams update simultaneously:
layer 1 gives (C(A,B), C(B,A)), layer 2 mixes those again. ``form: paper`` uses the paper's C
(single-head attention, then a two-layer MLP); ``form: reference`` uses the SAMUS authors' block
(pre-LayerNorm residual cross-attention, 8 heads x 64 with a "+1" softmax, then a ReLU FFN), keeps
T_o instead of T_o1 and sends only the first token of T' to the decoder.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from segment_anything.modeling.common import LayerNorm2d, MLPBlock
from torch import Tensor, nn

from samfx.contracts.errors import CheckpointError, RecipeError
from samfx.contracts.interfaces import BuildContext, ImageFeatures, PromptContext, PromptGenerator, Prompts
from samfx_plugins.apg.config import ARCH_KEYS, FORMS, APGConfig

REF_HEADS, REF_HEAD_DIM = 8, 64


class PaperCombine(nn.Module):
    """The paper's C(A,B) = MLP(softmax(A W_q (B W_k)^T / sqrt(d)) (B W_v)); no residual, no norm."""

    def __init__(self, dim: int, mlp_dim: int):
        super().__init__()
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, dim, bias=False)
        self.mlp = MLPBlock(dim, mlp_dim, act=nn.ReLU)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        out = F.scaled_dot_product_attention(self.q(a), self.k(b), self.v(b))  # scale 1/sqrt(d)
        return self.mlp(out)


def softmax1_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """The authors' "+1" attention over (B,H,N,D) tensors, exactly as their code computes it.

    With s = q·k/sqrt(D) and m = max_j s_j the weights are exp(s_i - m) / (1 + sum_j exp(s_j - m)),
    i.e. exp(s_i) / (exp(m) + sum_j exp(s_j)): the max is subtracted *before* the 1 is added, so the
    extra term scales with the largest score (not the exp(s_i) / (1 + sum exp(s_j)) the name suggests).
    """
    s = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    e = torch.exp(s - s.amax(dim=-1, keepdim=True))
    return (e / (1 + e.sum(dim=-1, keepdim=True))) @ v


class ReferenceCombine(nn.Module):
    """The authors' cross-attention block: x += attn(LN(x), LN(ctx)); x += FFN(LN(x))."""

    def __init__(self, dim: int, mlp_dim: int, heads: int = REF_HEADS, head_dim: int = REF_HEAD_DIM):
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim)
        self.norm_ff = nn.LayerNorm(dim)
        self.ff = MLPBlock(dim, mlp_dim, act=nn.ReLU)

    def _split(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.heads, -1).transpose(1, 2)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        q = self._split(self.to_q(self.norm_q(a)))
        k, v = (self._split(t) for t in self.to_kv(self.norm_kv(b)).chunk(2, dim=-1))
        out = softmax1_attention(q, k, v).transpose(1, 2).flatten(2)
        a = a + self.to_out(out)
        return a + self.ff(self.norm_ff(a))


class BiMixer(nn.Module):
    """Depth-2 bidirectional mixing of streams A and B; both streams update from the previous layer.

    Returns (A2, B2) with A2 = C_a2(C_a1(A,B), C_b1(B,A)) and B2 = C_b2(C_b1(B,A), C_a1(A,B));
    B2 is skipped (None) when ``need_b`` is False.
    """

    def __init__(self, make: type[nn.Module], dim: int, mlp_dim: int, depth: int = 2):
        super().__init__()
        self.a_blocks = nn.ModuleList(make(dim, mlp_dim) for _ in range(depth))
        self.b_blocks = nn.ModuleList(make(dim, mlp_dim) for _ in range(depth))

    def forward(self, a: Tensor, b: Tensor, need_b: bool = True) -> tuple[Tensor, Tensor | None]:
        last = len(self.a_blocks) - 1
        for i, (fa, fb) in enumerate(zip(self.a_blocks, self.b_blocks)):
            if i == last and not need_b:
                return fa(a, b), None
            a, b = fa(a, b), fb(b, a)
        return a, b


class DensePrompt(nn.Sequential):
    """M: four blocks of Conv3x3 (no bias) + LayerNorm2d + GELU with widths d/4, d/4, d/4, d."""

    def __init__(self, dim: int):
        widths = [dim, dim // 4, dim // 4, dim // 4, dim]
        layers: list[nn.Module] = []
        for cin, cout in zip(widths[:-1], widths[1:]):
            layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), LayerNorm2d(cout), nn.GELU()]
        super().__init__(*layers)


class AutoPromptGenerator(PromptGenerator):
    """Prompts from the decoder's output tokens and the image embedding; no user input needed."""

    needs_targets = False

    def __init__(self, embed_dim: int, form: str = "paper", tokens: int = 50, tasks: int = 1,
                 sparse_tokens: int | None = None, mlp_dim: int | None = None, residual: bool = True):
        super().__init__()
        _check_config(form, tokens, sparse_tokens, embed_dim)
        self.embed_dim, self.form, self.tokens, self.tasks = embed_dim, form, tokens, tasks
        self.mlp_dim = mlp_dim or 4 * embed_dim
        self.residual = residual
        self.sparse_tokens = sparse_tokens or (tokens if form == "paper" else 1)
        block = PaperCombine if form == "paper" else ReferenceCombine
        self.task_tokens = nn.Parameter(torch.randn(tasks, tokens, embed_dim))
        self.token_mixer = BiMixer(block, embed_dim, self.mlp_dim)
        self.proj = nn.Linear(embed_dim, embed_dim, bias=form == "reference")
        self.image_mixer = BiMixer(block, embed_dim, self.mlp_dim)
        self.dense = DensePrompt(embed_dim)

    def import_foreign_state(self, state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
        """Read the AutoSAMUS authors' APG (``prompt_generator.*``, ``feature_adapter.*``; reference form)."""
        from samfx_plugins.apg import authors

        if not authors.is_authors_apg(state):
            return state
        if self.form != "reference":
            raise CheckpointError("it holds the AutoSAMUS authors' APG (prompt_generator.*), which is the "
                                  "reference form; set model.prompt.form=reference")
        return authors.from_authors(state, list(self.state_dict()), prefix)

    def export_foreign_state(self, fmt: str, state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
        """``authors``: this APG's keys in the AutoSAMUS authors' layout (reference form only)."""
        from samfx_plugins.apg import authors

        if fmt != "authors":
            return state
        if self.form != "reference" or self.tasks != 1:
            raise CheckpointError(f"the authors' layout holds only a reference-form APG with one task set; "
                                  f"this APG has form={self.form}, tasks={self.tasks}")
        return authors.to_authors(state, prefix)

    def config(self) -> dict:
        """The architecture keys (ARCH_KEYS) plus sparse_tokens, as plain data."""
        return {"form": self.form, "tokens": self.tokens, "tasks": self.tasks, "mlp_dim": self.mlp_dim,
                "residual": self.residual, "sparse_tokens": self.sparse_tokens}

    def arch(self) -> dict:
        cfg = self.config()
        return {k: cfg[k] for k in ARCH_KEYS}

    def updated_tokens(self, output_tokens: Tensor) -> Tensor:
        """T per task set: (tasks, k+T, C) = [T_t1; T_o1] (paper) or [T_t1; T_o] (reference)."""
        t_t = self.task_tokens
        t_o = output_tokens.to(t_t.dtype).unsqueeze(0).expand(self.tasks, -1, -1)
        paper = self.form == "paper"
        mixed_t, mixed_o = self.token_mixer(t_t, t_o, need_b=paper)
        t_t1 = self.proj(mixed_t) + t_t
        t_o1 = self.proj(mixed_o) + t_o if paper else t_o
        return torch.cat([t_t1, t_o1], dim=1)

    def task_index(self, class_ids: Tensor, batch: int) -> Tensor | None:
        """Task set of each query (None: one shared set, for queries of one class only)."""
        if self.tasks == 1:
            if not torch.compiler.is_compiling() and class_ids.numel() > 1 and bool((class_ids != class_ids[0]).any()):
                ids = ", ".join(str(int(c)) for c in torch.unique(class_ids))
                raise RecipeError(f"prompt 'apg': one task-token set (tasks: 1) would give classes {ids} the same "
                                  f"prompt, hence the same mask; set model.prompt.tasks to the largest class id "
                                  f"(one set per class), or segment one class (data.classes)")
            return None
        if class_ids.shape != (batch,):
            raise RecipeError(f"prompt 'apg': class_ids must have shape ({batch},), got {tuple(class_ids.shape)}")
        if not torch.compiler.is_compiling():
            lo, hi = int(class_ids.min()), int(class_ids.max())
            if lo < 1 or hi > self.tasks:
                bad = lo if lo < 1 else hi
                raise RecipeError(f"prompt 'apg': class id {bad} has no task-token set (tasks: {self.tasks}, "
                                  f"ids 1..{self.tasks}); set model.prompt.tasks to the largest class id")
        return class_ids.long() - 1

    def forward(self, ctx: PromptContext) -> Prompts:
        per_query = ctx.features.per_query(ctx.queries_per_image)   # the APG rewrites each query's image
        emb = per_query.embedding
        b, c, h, w = emb.shape
        if c != self.embed_dim:
            raise RecipeError(f"prompt 'apg': image embedding has width {c} but this APG was built for "
                              f"{self.embed_dim}; build the APG with the model it runs on")
        tokens = self.updated_tokens(ctx.mask_decoder.output_tokens())
        idx = self.task_index(ctx.class_ids, b)
        # index_select, not tokens[idx]: the backward of advanced indexing (index_put_ with accumulate)
        # sums in a thread-dependent order on CPU, so runs with >1 thread were not bit-reproducible
        tokens = tokens.expand(b, -1, -1) if idx is None else tokens.index_select(0, idx)
        tokens = tokens.to(emb.dtype)
        feats = emb.flatten(2).transpose(1, 2)                       # (B,hw,C)
        new_feats, new_tokens = self.image_mixer(feats, tokens)
        if self.form == "paper" and self.residual:
            new_feats, new_tokens = feats + new_feats, tokens + new_tokens
        new_emb = new_feats.transpose(1, 2).reshape(b, c, h, w)
        sparse = new_tokens[:, : self.sparse_tokens]
        features = ImageFeatures(new_emb, per_query.high_res, per_query.pos)
        return Prompts(sparse=sparse, dense=self.dense(new_emb), features=features)


def _check_config(form: str, tokens: int, sparse_tokens: int | None, embed_dim: int) -> None:
    """The choices and the rules across keys; the numeric ranges, declared in :class:`APGConfig`, are
    checked when the recipe is loaded."""
    where = "prompt 'apg'"
    if form not in FORMS:
        raise RecipeError(f"{where}: form '{form}' is unknown; use one of: {', '.join(FORMS)}")
    if sparse_tokens is not None and sparse_tokens > tokens:
        raise RecipeError(f"{where}: sparse_tokens must be in 1..tokens ({tokens}), got {sparse_tokens}")
    if embed_dim % 4:
        raise RecipeError(f"{where}: embedding width {embed_dim} must be divisible by 4 (dense-prompt convs)")


def build_apg(config: APGConfig, ctx: BuildContext) -> AutoPromptGenerator:
    """Registry factory: an APG for the model's prompt width; loads ``config.weights`` when set,
    unless the model is built without its checkpoint (``ctx.load_weights`` False: ``samfx
    show``, or eval/predict rebuilding a trained run whose checkpoint holds the APG)."""
    apg = AutoPromptGenerator(ctx.embed_dim, form=config.form, tokens=config.tokens, tasks=config.tasks,
                              sparse_tokens=config.sparse_tokens, mlp_dim=config.mlp_dim,
                              residual=config.residual)
    if config.weights and ctx.load_weights:
        from samfx_plugins.apg.io import load_apg
        load_apg(apg, config.weights)
    return apg
