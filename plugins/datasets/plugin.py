"""Registration of the datasets plugin (light: no torch import)."""
from samfx import hookimpl
from samfx_plugins.datasets.config import (
    BusiConfig,
    CamusConfig,
    EchoNetConfig,
    EchoNetPediatricConfig,
    H5Config,
    SyntheticEchoConfig,
    US30KConfig,
)

_SRC = "samfx_plugins.datasets.sources"


@hookimpl
def samfx_register(registry):
    registry.add("dataset", "synthetic_echo", f"{_SRC}:synthetic_echo", schema=SyntheticEchoConfig,
                 description="Synthetic apical 2CH/4CH echo sequences (LV/MYO/LA), generator v1 or v2 "
                 "(version), generated once into the cache.")
    registry.add("dataset", "h5", f"{_SRC}:h5", schema=H5Config,
                 description="An existing samfx HDF5 store file.")
    registry.add("dataset", "camus", f"{_SRC}:camus", schema=CamusConfig,
                 description="CAMUS folder (2023 NIfTI or 2019 MetaImage release), imported once into the cache.")
    registry.add("dataset", "us30k", f"{_SRC}:us30k", schema=US30KConfig,
                 description="SAMUS US30K PNG folder, imported once into the cache.")
    registry.add("dataset", "echonet", f"{_SRC}:echonet", schema=EchoNetConfig,
                 description="EchoNet-Dynamic folder, imported once into the cache.")
    registry.add("dataset", "busi", f"{_SRC}:busi", schema=BusiConfig,
                 description="BUSI folder as distributed (Dataset_BUSI_with_GT), imported once into the cache.")
    registry.add("dataset", "echonet_pediatric", f"{_SRC}:echonet_pediatric", schema=EchoNetPediatricConfig,
                 description="EchoNet-Pediatric folder (A4C/, PSAX/), imported once into the cache.")
