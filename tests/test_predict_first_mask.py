"""`samfx predict --first-mask`: frame 0's label map of a sequence, carried by the temporal module."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from samfx import api
from samfx.contracts.errors import SamfxError
from samfx.deploy.inputs import read_inputs
from samfx.deploy.predict import predict
from samfx.engine.run import checkpoints as ckpt

ROOT = Path(__file__).resolve().parents[1]
TINY = ["model.image_encoder.size=tiny", "model.image_encoder.image_size=128", "model.image_encoder.out_dim=64",
        "model.mask_decoder.mlp_dim=128", "model.prompt.tokens=4", "model.prompt.mlp_dim=64"]


def _run(folder: Path, *overrides: str) -> Path:
    rec = api.load_recipe(ROOT / "recipes" / "autosamus_msff_stm.yaml", [*TINY, *overrides])
    torch.manual_seed(0)
    model = api.build_model(rec, load_checkpoint=False)
    folder.mkdir(parents=True)
    ckpt.save(ckpt.make(model, rec), folder / "best.pt")
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    # a readout far from its near-zero start, so that a random memory moves the later frames visibly
    return {"stm": _run(root / "stm", "model.temporal.out_init_std=1.0"),
            "none": _run(root / "none", "model.temporal=null")}


@pytest.fixture(scope="module")
def sequence(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("seq") / "seq.nii.gz"
    data = np.random.default_rng(0).integers(0, 255, (48, 40, 4)).astype(np.uint8)    # (x, y, t)
    nib.save(nib.Nifti1Image(data, np.diag([0.3, 0.3, 1.0, 1.0])), str(path))
    return path


def _mask(sequence: Path, folder: Path, shift: int = 0, name: str = "m.png") -> tuple[Path, np.ndarray]:
    h, w = read_inputs(str(sequence))[0].frames.shape[1:]
    mask = np.zeros((h, w), np.uint8)
    mask[8 + shift:24 + shift, 10:30] = 1
    mask[26 + shift:30 + shift, 6:40] = 2
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask).save(folder / name)
    return folder / name, mask


def test_frame_0_is_the_given_mask_and_the_memory_carries_it(runs, sequence, tmp_path):
    png, mask = _mask(sequence, tmp_path)
    report = predict(runs["stm"], [str(sequence)], tmp_path / "a", first_mask=png)
    assert report["prompt"] == "masks" and report["first_mask"] == str(png)
    folder = Path(report["results"][0]["folder"])
    frame0 = np.asarray(Image.open(folder / "frame_000_label.png"))
    assert frame0.shape == mask.shape and (frame0 == mask).mean() > 0.97   # resized to 128² and back
    moved, _ = _mask(sequence, tmp_path, shift=6, name="moved.png")
    other = Path(predict(runs["stm"], [str(sequence)], tmp_path / "b", first_mask=moved)["results"][0]["folder"])
    later = [np.asarray(Image.open(f / "frame_002_label.png")) for f in (folder, other)]
    assert not np.array_equal(*later)                                      # frame 2 follows frame 0's mask


def test_bad_first_masks_are_one_line_errors(runs, sequence, tmp_path):
    png, mask = _mask(sequence, tmp_path)
    out = tmp_path / "o"
    cases = []
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(tmp_path / "small.png")
    cases.append(({"first_mask": tmp_path / "small.png"}, r"^--first-mask: 10x12 label map, but .*seq\.nii\.gz has "
                                                          r"\d+x\d+ frames; give frame 0's labels at the sequence"))
    Image.fromarray(np.where(mask > 0, 7, 0).astype(np.uint8)).save(tmp_path / "seven.png")
    cases.append(({"first_mask": tmp_path / "seven.png"}, r"^--first-mask: values \[7\] are not classes of this "
                                                          r"model \(\[1, 2, 3\], 0 = background\)"))
    colour = np.zeros((*mask.shape, 3), np.uint8)
    colour[..., 0] = mask                                                  # labels painted red
    Image.fromarray(colour).save(tmp_path / "rgb.png")
    cases.append(({"first_mask": tmp_path / "rgb.png"}, r"^--first-mask .*rgb\.png: colour label image; labels must "
                                                        r"be one class id per pixel; give frame 0's label map"))
    (tmp_path / "junk.png").write_bytes(b"not a png")
    cases.append(({"first_mask": tmp_path / "junk.png"}, r"^--first-mask .*junk\.png: cannot read image "
                                                         r"\(UnidentifiedImageError"))
    cases.append(({"first_mask": tmp_path / "nope.png"}, r"^--first-mask .*nope\.png: no such file"))
    cases.append(({"first_mask": png, "prompt": "apg"}, r"^--first-mask: prompt 'apg' does not take a given mask"))
    for kwargs, match in cases:
        with pytest.raises(SamfxError, match=match):
            predict(runs["stm"], [str(sequence)], out, **kwargs)
    with pytest.raises(SamfxError, match=r"^--first-mask: the mask is frame 0 of one sequence, but the inputs "
                                         r"hold 2 images/sequences"):
        predict(runs["stm"], [str(sequence), str(sequence)], out, first_mask=png)
    with pytest.raises(SamfxError, match=r"^--first-mask: .*m\.png is a single image; the mask starts a sequence"):
        predict(runs["stm"], [str(png)], out, first_mask=png)
    with pytest.raises(SamfxError, match=r"^--first-mask: this checkpoint has no temporal module"):
        predict(runs["none"], [str(sequence)], out, first_mask=png)
    (tmp_path / "model.onnx").write_bytes(b"")     # refused before it is opened
    with pytest.raises(SamfxError, match=r"^--first-mask: an exported ONNX model segments frames one by one"):
        predict(tmp_path / "model.onnx", [str(sequence)], out, first_mask=png)
