"""MSFF: multi-scale dilated feature fusion, attached to a feature-map site (SAMUS's CNN branch)."""
from samfx import hookimpl
from samfx_plugins.msff.config import MSFFConfig


@hookimpl
def samfx_register(registry):
    registry.add("adapter", "msff", "samfx_plugins.msff.module:build_msff", schema=MSFFConfig,
                 description="Multi-scale feature fusion (1x1 branch + cascaded dilated 3x3 convs) on a "
                             "bchw site such as SAMUS's `cnn.out`.")
