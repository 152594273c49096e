"""Registration of the samus plugin (light: no torch import)."""
from samfx import hookimpl


@hookimpl
def samfx_register(registry):
    pass
