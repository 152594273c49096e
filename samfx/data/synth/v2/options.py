"""Options of generator v2 (torch- and numpy-free: the datasets plugin's recipe schema imports it).

Every effect has one option; 0 (or False) switches it off, the defaults are what `version: 2` draws.
docs/data.md lists them with pictures.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from samfx.contracts.errors import DataError


@dataclass
class SynthV2Options:
    # speckle: scatterers carried by the tissue motion, imaged through a depth-dependent PSF in beam coordinates
    beams: int = 160                  # scan lines across the sector (the polar grid's width)
    psf_axial_mm: float = 0.45        # axial PSF sigma (mm), the same at every depth
    psf_lateral_mm: float = 1.3       # lateral PSF sigma at the focus (mm); it widens away from the focus
    focus: float = 0.45               # transmit focus as a fraction of the sector depth
    blood_correlation: float = 0.15   # frame-to-frame correlation of blood scatterers (tissue's are carried: 1)
    blood_echo_db: float = -22.0      # blood backscatter relative to myocardium (dB)
    # depth attenuation and time-gain compensation
    attenuation_db_cm_mhz: float = 0.5  # tissue; blood attenuates 5x less (enhancement behind the cavities)
    frequency_mhz: float = 2.5
    tgc: float = 0.85                 # share of the expected tissue attenuation the TGC gives back (0..1)
    # near-field clutter and reverberation haze (static over the sequence), relative level; 0 = none
    clutter: float = 1.5
    # lateral dropout of walls parallel to the beam (specular reflection), 0..1; 0 = none
    specular_dropout: float = 1.0
    # acoustic shadow behind a rib at the sector edge: probability per sequence; 0 = never
    shadow: float = 0.25
    # electronic noise (before TGC, so it grows with depth), relative level; 0 = none
    noise: float = 1.5
    # anatomy
    trabeculae: float = 1.5           # depth of the trabeculated endocardium (x ~2.5 mm); labeled LV
    papillary: bool = True            # papillary muscles inside the LV; labeled LV (as CAMUS)
    mitral_valve: bool = True         # leaflets: closed at ED and ES, open in diastole
    # cycles and patients
    full_cycle: float = 0.5           # share of sequences covering ED -> ES -> ED (else half cycles ED -> ES)
    quality_mix: list[float] = field(default_factory=lambda: [0.35, 0.45, 0.20])  # good / medium / poor

    def check(self, where: str = "v2") -> SynthV2Options:
        """Self, or a DataError naming ``where.<option>`` for a value out of range."""
        bounds = {"beams": (32, 1024), "psf_axial_mm": (0.05, 5.0), "psf_lateral_mm": (0.1, 10.0),
                  "focus": (0.05, 1.5), "blood_correlation": (0.0, 1.0), "blood_echo_db": (-80.0, 0.0),
                  "attenuation_db_cm_mhz": (0.0, 3.0), "frequency_mhz": (0.5, 15.0), "tgc": (0.0, 1.0),
                  "clutter": (0.0, 10.0), "specular_dropout": (0.0, 1.0), "shadow": (0.0, 1.0),
                  "noise": (0.0, 10.0), "trabeculae": (0.0, 3.0), "full_cycle": (0.0, 1.0)}
        for name, (lo, hi) in bounds.items():
            value = getattr(self, name)
            if not lo <= value <= hi:
                raise DataError(f"{where}.{name}: must be in [{lo:g}, {hi:g}], got {value}")
        mix = list(self.quality_mix)
        if len(mix) != 3 or min(mix) < 0 or sum(mix) <= 0:
            raise DataError(f"{where}.quality_mix: expected 3 weights >= 0 (good, medium, poor), got {mix}")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def v2_options(value: SynthV2Options | dict | None, where: str = "v2") -> SynthV2Options:
    """Options from a mapping (recipe, JSON) or None (defaults), checked."""
    if value is None:
        return SynthV2Options().check(where)
    if isinstance(value, SynthV2Options):
        return value.check(where)
    names = {f.name for f in dataclasses.fields(SynthV2Options)}
    unknown = sorted(set(value) - names)
    if unknown:
        raise DataError(f"{where}: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    return SynthV2Options(**dict(value)).check(where)
