"""Recipe schemas of the dataset components (torch-free)."""
from __future__ import annotations

from dataclasses import dataclass, field

from samfx.data.synth.v2.options import SynthV2Options

# cache_dir: None -> the cache_dir the caller passes, else $SAMFX_CACHE, else ~/.cache/samfx


@dataclass
class SyntheticEchoConfig:
    patients: int = 50
    seed: int = 0
    frames: int = 12                  # frames per ED->ES sequence
    size: list[int] = field(default_factory=lambda: [256, 288])  # frame H, W in pixels
    wall_flicker: float = 0.0         # 0..1: wall dropouts fade in and out over a sequence (0 = fixed); v1 only
    version: int = 1                  # generator: 1 (frozen cartoon), 2 (beam-domain physics, docs/data.md)
    v2: SynthV2Options = field(default_factory=SynthV2Options)  # generator v2's effects (ignored by v1)
    cache_dir: str | None = None


@dataclass
class H5Config:
    path: str = ""                    # an existing samfx store (.h5); ~ expanded


@dataclass
class CamusConfig:
    root: str = ""                    # database_nifti/ (+ database_split/), or training/ + testing/ (2019 .mhd)
    seed: int = 0                     # patient split seed when there are no split files
    sequences: bool = True            # import half sequences too
    cache_dir: str | None = None


@dataclass
class US30KConfig:
    root: str = ""                    # folder holding MainPatient/ and the dataset folders
    datasets: list[str] = field(default_factory=list)  # empty: every listed dataset
    cache_dir: str | None = None


@dataclass
class EchoNetConfig:
    root: str = ""                    # folder holding FileList.csv, VolumeTracings.csv, Videos/
    limit: int | None = None          # first N videos only
    cache_dir: str | None = None


@dataclass
class BusiConfig:
    root: str = ""                    # Dataset_BUSI_with_GT/ or the folder holding it
    seed: int = 0                     # seed of the 70/10/20 split (within each category)
    cache_dir: str | None = None


@dataclass
class EchoNetPediatricConfig:
    root: str = ""                    # folder holding A4C/ and PSAX/ (each like EchoNet-Dynamic)
    val_fold: int = 1                 # Split (fold 0-9) used as val
    test_fold: int = 0                # Split (fold 0-9) used as test
    limit: int | None = None          # first N videos per view only
    cache_dir: str | None = None
