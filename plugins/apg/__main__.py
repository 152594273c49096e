"""``python -m samfx_plugins.apg export RUN_OR_CKPT --out apg.pt [--key apg]``.

Extracts the APG of a trained samfx model (a checkpoint file, or a run folder's best.pt else
last.pt) into an APG file that ``model.prompt.weights`` (or ``load_apg``) reads. The APG's settings come from the recipe
stored in the checkpoint or run folder when there is one, otherwise from the weights' shapes.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from samfx.contracts.errors import SamfxError


def _recipe_prompt(obj: dict[str, Any], folder: Path | None, key: str) -> dict[str, Any] | None:
    """The settings of prompt generator `key` from the recipe stored in the checkpoint or run folder."""
    import yaml

    from samfx.config.recipe import Recipe
    from samfx.model.build import prompt_configs

    rec = obj.get("recipe")
    stored = folder / "recipe.yaml" if folder is not None else None
    if not isinstance(rec, dict) and stored is not None and stored.is_file():
        rec = yaml.safe_load(stored.read_text())
    if not isinstance(rec, dict):
        return None
    try:
        found, _ = prompt_configs(Recipe(config=rec))
    except (KeyError, TypeError, AttributeError):
        return None
    return found.get(key)


def export(source: str | Path, out: str | Path, key: str = "apg") -> Path:
    """Write the APG under ``prompt_generators.<key>`` of `source` to `out`; returns `out`."""
    from samfx.checkpoints.files import model_state, read_checkpoint
    from samfx.engine.run.rundir import find_checkpoint
    from samfx_plugins.apg.io import extract_from_state, write_apg

    source = Path(source).expanduser()
    folder = source if source.is_dir() else None
    ckpt = find_checkpoint(source)              # a file, or a run folder's best.pt (else last.pt)
    obj = read_checkpoint(ckpt)
    state = model_state(obj, ckpt)
    config = _recipe_prompt(obj, folder, key)
    payload = extract_from_state(state, f"prompt_generators.{key}.", config, str(ckpt))
    out = Path(out).expanduser()
    write_apg(payload, out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m samfx_plugins.apg",
                                     description="Save the APG of a trained samfx model on its own.")
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("export", help="extract the APG from a checkpoint or run folder")
    ex.add_argument("source", help="samfx checkpoint file or run folder")
    ex.add_argument("--out", required=True, help="APG file to write (e.g. apg.pt)")
    ex.add_argument("--key", default="apg", help="prompt generator key in the model (default: apg)")
    args = parser.parse_args(argv)
    try:
        out = export(args.source, args.out, args.key)
    except SamfxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
