"""Registration of the apg plugin (light: no torch import)."""
from samfx import hookimpl


@hookimpl
def samfx_register(registry):
    pass
