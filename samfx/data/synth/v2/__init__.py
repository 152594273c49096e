"""Synthetic echo generator v2: apical 2CH/4CH sequences imaged the way a phased array images them.

Modules (import the heavy ones where they are used; this package and ``options`` import no numpy):

- ``options``: :class:`SynthV2Options`, every effect a recipe option (``data.source.v2.*``);
- ``patient``: per-patient and per-view parameters, the cardiac cycle (contraction, valve, ES frame);
- ``anatomy``: the heart in long-axis coordinates: labels, echogenicity, tissue motion, wall normals;
- ``acoustics``: beam (polar) grid, scatterers, point-spread function, attenuation, clutter, scan conversion;
- ``render``: :func:`render_sequence`, one sequence from (seed, patient, view).
"""
from samfx.data.synth.v2.options import SynthV2Options

__all__ = ["SynthV2Options"]
