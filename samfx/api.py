"""The Python API for notebooks and scripts (docs/python_api.md); the CLI calls these same functions.

Names and signatures listed in ``__all__`` are stable. Errors are :class:`samfx.contracts.errors.SamfxError`
with a one-line message (the CLI prints it as ``error: ...``). Torch is imported on first call.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from samfx.config.recipe import Recipe
from samfx.config.recipe import load_recipe as load
from samfx.contracts.errors import SamfxError
from samfx.contracts.plugins import get_plugins, get_registry
from samfx.deploy.precision import for_inference
from samfx.deploy.predict import predict as run_predict
from samfx.deploy.predict import segment_frames
from samfx.engine.eval.evaluate import choose_prompt
from samfx.engine.eval.evaluate import evaluate as run_eval
from samfx.engine.run import checkpoints as ckpt
from samfx.engine.run import rundir
from samfx.engine.run.distributed import DistInfo, resolve_device
from samfx.engine.train.trainer import Trainer
from samfx.model.build import build_model as build
from samfx.report.write import write_report

if TYPE_CHECKING:
    import numpy as np
    from torch.utils.data import Dataset

    from samfx.contracts.registry import Registry
    from samfx.engine.train.trainer import Trainer
    from samfx.model.segmentation import SegmentationModel

__all__ = ["Run", "load_recipe", "build_model", "train", "resume", "evaluate", "predict", "predict_arrays",
           "load_run", "report"]

def _registry(registry: Registry | None) -> Registry:
    return registry if registry is not None else get_registry()


def load_recipe(path: str | Path | None, overrides: Sequence[str] = (), *,
                registry: Registry | None = None) -> Recipe:
    """Read a recipe YAML (None: the defaults only), apply ``key.path=value`` overrides, validate it
    against the installed plugins' components (or `registry`) and fill defaults."""

    return load(path, list(overrides), _registry(registry))


def _as_recipe(recipe: Recipe | str | Path, overrides: Sequence[str], registry: Registry | None) -> Recipe:
    if isinstance(recipe, Recipe):
        if overrides:
            raise SamfxError("overrides apply to a recipe file; pass them to load_recipe(path, overrides)")
        return recipe
    return load_recipe(recipe, overrides, registry=registry)


def build_model(recipe: Recipe | str | Path, *, registry: Registry | None = None,
                load_checkpoint: bool = True) -> SegmentationModel:
    """The recipe's model (train mode, on the CPU); ``load_checkpoint`` loads ``model.checkpoint``'s
    weights when the recipe names one (False: freshly initialised weights)."""

    return build(_as_recipe(recipe, (), registry), _registry(registry), load_checkpoint=load_checkpoint)


def _fit(recipe: Recipe, run_dir: str | Path | None, resume: bool, registry: Registry | None,
         datasets: Mapping[str, Dataset[Any] | None] | None,
         callbacks: Sequence[Callable[[Trainer, str], None]], quiet: bool) -> dict[str, Any]:

    versions = None
    if registry is None:
        plugins = get_plugins()
        registry, versions = plugins.registry, plugins.versions()
    trainer = Trainer(recipe, run_dir, registry=registry, plugin_versions=versions, datasets=datasets,
                      resume=resume, callbacks=callbacks, quiet=quiet)
    return trainer.fit()


def train(recipe: Recipe | str | Path, run_dir: str | Path | None = None, *, overrides: Sequence[str] = (),
          registry: Registry | None = None, datasets: Mapping[str, Dataset[Any] | None] | None = None,
          callbacks: Sequence[Callable[[Trainer, str], None]] = (), quiet: bool = True) -> dict[str, Any]:
    """Train every stage into `run_dir` (None: ``train.out_dir/<recipe>-<time>``); returns metrics.json's
    content (``["run"]`` is the run folder). ``datasets`` ({"train": ds, "val": ds or None}) replaces the
    recipe's data; ``callbacks`` are called as ``cb(trainer, "step" | "epoch")``. Ctrl-C raises
    :class:`samfx.engine.train.interrupt.Interrupted` (a KeyboardInterrupt) with last.pt written."""
    return _fit(_as_recipe(recipe, overrides, registry), run_dir, False, registry, datasets, callbacks, quiet)


def resume(run_dir: str | Path, recipe: Recipe | str | Path | None = None, *, overrides: Sequence[str] = (),
           registry: Registry | None = None, quiet: bool = True) -> dict[str, Any]:
    """Continue a stopped run where its last.pt left off, with the run's own recipe.yaml unless `recipe`
    is given (overrides may change only what resuming allows, e.g. ``train.device``)."""
    folder = Path(run_dir).expanduser()
    if recipe is None:
        if not folder.is_dir():
            raise SamfxError(f"resume: no run folder {run_dir}; check the path")
        recipe = folder / "recipe.yaml"
        if not recipe.is_file():
            raise SamfxError(f"resume: no recipe.yaml in {run_dir}; is it a samfx run folder?")
    return _fit(_as_recipe(recipe, overrides, registry), folder, True, registry, None, (), quiet)


def evaluate(target: str | Path, *, split: str | None = None, data: str | None = None, prompt: str | None = None,  # noqa: PLR0913  (mirrors samfx eval's options)
             device: str = "auto", compat_row_hd: bool | None = None, limit: int | None = None,
             write: bool = True, registry: Registry | None = None) -> dict[str, Any]:
    """Per-class Dice / IoU / HD / HD95 of a run folder (best.pt, else last.pt) or checkpoint on `split`
    (default ``eval.split``) of its data or of `data` (a .h5 store or a dataset as YAML); returns the
    report of docs/metrics.md, also written as eval-<split>.json next to the checkpoint when `write`."""

    return run_eval(target, split=split, data=data, prompt=prompt, device=device, registry=registry,
                    compat=compat_row_hd, limit=limit, write=write)


def predict(checkpoint: str | Path, inputs: Sequence[str | Path], out_dir: str | Path, *,  # noqa: PLR0913  (mirrors samfx predict's options)
            prompt: str | None = None, device: str = "auto", registry: Registry | None = None,
            engine: str | None = None, first_mask: str | Path | None = None,
            any_modality: bool = False, skip_bad: bool = False, precision: str | None = None) -> dict[str, Any]:
    """Segment image / NIfTI / .h5 / DICOM / MP4-AVI files into `out_dir` (label maps, overlays, LV area curves
    and EF for sequences, predictions.json); returns predictions.json's content. `engine`: ``"torch"`` (a run
    folder or checkpoint) or ``"onnx"`` (a file from ``samfx export``, run by onnxruntime); None: onnx
    for a .onnx path, else torch. `first_mask`: a label-map PNG of frame 0 of the one sequence input,
    carried through the sequence by the model's temporal module (semi-supervised). DICOMs whose Modality
    is not US are refused unless `any_modality`. Every input is checked before the model runs: the first bad
    file is an error, or with `skip_bad` left out and reported in ``skipped``. EF, volumes and ED/ES are None
    with a ``withheld`` reason when the sequence fails the plausibility rules (docs/temporal.md); ``model`` is
    the model's provenance; each result's ``warnings`` flag a doubtful input (e.g. a scan sector under 5 %
    of the image). `precision`: ``"fp32"``, ``"bf16"``, ``"int8"`` / ``"int8-bf16"`` (CPU) or ``"auto"`` (per
    device and CPU flags), refused in one line when it misses its accuracy gate on this model (docs/performance.md);
    None: the recipe's ``train.precision`` as before."""

    return run_predict(checkpoint, [str(p) for p in inputs], out_dir, prompt=prompt, device=device,
                       registry=registry, engine=engine, first_mask=first_mask, any_modality=any_modality,
                       skip_bad=skip_bad, precision=precision)


def report(run_dir: str | Path, *, split: str | None = None, out: str | Path | None = None,
           device: str = "cpu", registry: Registry | None = None,
           prompt: str | Sequence[str] | None = None) -> Path:
    """Write the self-contained HTML report of an evaluated run folder (its eval-<split>[-<prompt>].json;
    `prompt` None: the newest evaluation of the split; several prompts, or ``"all"`` for every evaluation
    of the split: one page comparing them per class ahead of the first one's sections; docs/report.md)
    to `out` (default ``RUN/report-<split>[-<prompt>].html``, ``RUN/report-<split>-<a>+<b>.html`` for
    several) and return its path."""

    return write_report(run_dir, split=split, out=out, registry=registry, device=device, prompt=prompt)


@dataclass
class Run:
    """A trained model loaded from a run folder or checkpoint (:func:`load_run`)."""

    model: SegmentationModel       # eval mode, on `device`
    recipe: Recipe                 # the recipe it was trained with
    checkpoint: Path               # the file read
    classes: list[int]             # label-map values, in the order of `class_names`
    class_names: list[str]
    prompt: str                    # prompt generator used by segment(): an automatic one
    precision: str                 # fp32 | bf16 (autocast) | int8 | int8-bf16 (`model`: quantised copy)

    def segment(self, images: np.ndarray, *, sequence: bool = False) -> np.ndarray:
        """Gray images (H,W) or (N,H,W), uint8 0..255 -> label maps of the same shape (uint8 class
        ids, 0 = background); ``sequence``: the N frames are one clip (temporal models)."""
        import numpy as np

        arr = np.asarray(images)
        if arr.ndim not in (2, 3) or arr.dtype != np.uint8:
            raise SamfxError(f"segment: images must be uint8 (H,W) or (N,H,W), got {arr.dtype} "
                             f"{tuple(arr.shape)}; convert with (x * 255).astype('uint8') for [0,1] floats")
        out = segment_frames(self.model, arr[None] if arr.ndim == 2 else arr, self.classes, prompt=self.prompt,
                             precision=self.precision, sequence=sequence)
        return out[0] if arr.ndim == 2 else out


def load_run(target: str | Path, *, prompt: str | None = None, device: str = "auto",
             registry: Registry | None = None, precision: str | None = None) -> Run:
    """Rebuild the model of a run folder (best.pt, else last.pt) or checkpoint from its stored recipe and
    load its weights. `prompt`: an automatic prompt generator (default: eval.prompt, else the last
    stage's; clicks and boxes need ground truth and are refused). It becomes the model's active prompt, so
    ``run.model.forward`` and ``run.model.forward_clip`` use it too. `precision`: as :func:`predict`'s
    (int8, int8-bf16: ``run.model`` is the quantised copy; a precision missing its gate raises
    :class:`samfx.deploy.precision.PrecisionRefused`)."""

    reg = _registry(registry)
    path = rundir.find_checkpoint(target)
    dev = resolve_device(device, DistInfo(), option="device=")
    model, recipe, _ = ckpt.load_model(path, reg, dev)
    cfg = recipe.typed
    key = choose_prompt(model, recipe, prompt, reg, False, "load_run(prompt=)")
    model.use_prompt(key)  # also the default of model.forward / forward_clip
    model, chosen = for_inference(model, cfg.train.precision, precision, dev, list(cfg.data.classes), key,
                                  what=str(path))
    return Run(model=model, recipe=recipe, checkpoint=path, classes=list(cfg.data.classes),
               class_names=list(cfg.data.class_names), prompt=key, precision=chosen)


def predict_arrays(run: Run | str | Path, images: np.ndarray, *, sequence: bool = False,
                   prompt: str | None = None, device: str = "auto") -> np.ndarray:
    """Label maps of gray uint8 images (H,W) or (N,H,W) with a :class:`Run` or a run folder /
    checkpoint (loaded with :func:`load_run`, with `prompt` and `device`); nothing is written."""
    if isinstance(run, Run):
        if prompt is not None and prompt != run.prompt:
            raise SamfxError(f"predict_arrays: prompt '{prompt}' differs from the loaded run's '{run.prompt}'; "
                             f"pass it to load_run(..., prompt=...)")
        return run.segment(images, sequence=sequence)
    loaded = load_run(run, prompt=prompt, device=device)
    return loaded.segment(images, sequence=sequence)
