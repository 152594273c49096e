"""Medical SAM Adapter (MSA): a zero-initialised bottleneck added next to or after a ViT part."""
from __future__ import annotations

from torch import Tensor, nn

from samfx.contracts.errors import RecipeError
from samfx.contracts.interfaces import Adapter, BuildContext, Site
from samfx_plugins.msa_adapter import msa_keys
from samfx_plugins.msa_adapter.config import MSAAdapterConfig

ACTS = {"relu": nn.ReLU, "gelu": nn.GELU}
MODES = ("auto", "parallel", "serial")


class MSAAdapter(Adapter):
    """``parallel``: y + scale·up(act(down(x))); ``serial``: y + scale·up(act(down(y)))."""

    def __init__(self, dim: int, hidden: int, parallel: bool, scale: float, act: str = "relu",
                 site: str = ""):
        super().__init__()
        self.parallel, self.scale, self.act_name, self.site = parallel, scale, act, site
        self.down = nn.Linear(dim, hidden)
        self.act = ACTS[act]()
        self.up = nn.Linear(hidden, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return y + self.scale * self.up(self.act(self.down(x if self.parallel else y)))

    def import_foreign_state(self, state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
        """Read this site's adapter from a Medical-SAM-Adapter checkpoint (``*_Adapter.D_fc1/2``)."""
        if not msa_keys.is_msa(state):
            return state
        msa_keys.check_fits(self.parallel, self.scale, self.act_name, self.site)
        table = msa_keys.names(self.site, prefix)
        out = {table.get(k, k): v for k, v in state.items()}
        if self.site.endswith(".mlp"):  # the 3-D branch's adapter of this block never runs on 2-D images
            depth = f"image_encoder.{self.site[:-len('.mlp')]}.Depth_Adapter."
            out = {k: v for k, v in out.items() if not k.startswith(depth)}
        return out


def build_msa_adapter(config: MSAAdapterConfig, ctx: BuildContext, site: Site) -> MSAAdapter:
    where = f"adapter 'msa_adapter' at site '{site.name}'"
    if site.layout != "bhwc":
        raise RecipeError(f"{where}: needs ViT tokens (layout 'bhwc', e.g. blocks.N or blocks.N.mlp), "
                          f"this site is '{site.layout}' (the glob 'blocks.*' matches every site under blocks; "
                          f"for block outputs use 'blocks.*[0-9]')")
    if config.mode not in MODES:
        raise RecipeError(f"{where}: mode '{config.mode}' is unknown; use one of: {', '.join(MODES)}")
    if config.act not in ACTS:
        raise RecipeError(f"{where}: act '{config.act}' is unknown; use one of: {', '.join(ACTS)}")
    if not 0 < config.ratio <= 4:
        raise RecipeError(f"{where}: ratio must be in (0, 4], got {config.ratio}")
    parallel = site.name.endswith(".mlp") if config.mode == "auto" else config.mode == "parallel"
    if parallel and site.in_dim != site.out_dim:
        raise RecipeError(f"{where}: parallel mode needs equal input/output widths, got "
                          f"{site.in_dim} -> {site.out_dim}; use mode: serial")
    scale = config.scale if config.scale is not None else (0.5 if parallel else 1.0)
    hidden = max(1, int(round(site.out_dim * config.ratio)))
    return MSAAdapter(site.out_dim, hidden, parallel, scale, config.act, site.name)
