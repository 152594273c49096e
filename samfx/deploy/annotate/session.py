"""An annotation session: one loop, its label maps, the user's prompts and edits, undo/redo, and the
clinical readout; the single source of truth that the web server calls (docs/annotate.md).

Every operation is a dict (``{"op": "click", "t": 0, "cls": 1, "x": 40.5, "y": 30, "positive": true}``)
given to :meth:`AnnotationSession.apply`, which logs it; replaying the log on the same loop and run
rebuilds the session (the saved session JSON). An operation computes its result first and changes the
session only at the end, so an error part-way leaves the session as it was.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from samfx.deploy.annotate.access import AnnotateError
from samfx.deploy.annotate.features import FeatureCache, Precompute, nbytes
from samfx.deploy.annotate.history import History, Step
from samfx.deploy.annotate.loops import Loop
from samfx.deploy.annotate.modelops import Clicks, ModelOps
from samfx.deploy.caveats import EF_METHOD, NOT_CLINICAL, clinical_readout, provenance

OPS = ("click", "box", "clear", "automatic", "propagate", "brush", "undo", "redo")
MAX_BRUSH_POINTS = 10000


def _int(op: dict[str, Any], key: str, default: Any = None) -> int:
    value = op.get(key, default)
    if value is None or isinstance(value, bool):
        raise AnnotateError(f"operation '{op.get('op')}': '{key}' must be an integer, got {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise AnnotateError(f"operation '{op.get('op')}': '{key}' must be an integer, got {value!r}") from None


def _float(op: dict[str, Any], key: str) -> float:
    try:
        value = float(op[key])
    except (KeyError, TypeError, ValueError):
        raise AnnotateError(f"operation '{op.get('op')}': '{key}' must be a number, got {op.get(key)!r}") from None
    if not np.isfinite(value):
        raise AnnotateError(f"operation '{op.get('op')}': '{key}' must be finite, got {value}")
    return value


class AnnotationSession:
    """One loop being annotated with one run's model. ``key`` names the session in the shared feature
    cache (the server passes its random session id); ``precompute`` starts the background encoding."""

    def __init__(self, ops: ModelOps, loop: Loop, *, cache: FeatureCache | None = None, key: str = "local",
                 precompute: bool = True, history_mb: float = 256.0):
        self.ops, self.loop, self.key = ops, loop, key
        self.cache = cache if cache is not None else FeatureCache()
        t, h, w = loop.shape
        self.labels = np.zeros((t, h, w), np.uint8)
        self.labeled = np.zeros(t, bool)
        self.prompts: dict[tuple[int, int], Clicks] = {}
        self.history = History(history_mb)
        self.log: list[dict[str, Any]] = []
        self.lock = threading.RLock()
        self.precompute = Precompute(t, self._cache_frame, self._fits)
        self.last_method: str | None = None
        if precompute:
            self.precompute.start()

    # -- features -------------------------------------------------------------------------------------
    def features(self, t: int) -> Any:
        """Frame t's ImageFeatures: from the cache, else encoded now (and cached)."""
        feats = self.cache.get((self.key, t))
        if feats is None:
            feats = self.ops.encode(self.loop.frames[t])
            self.cache.put((self.key, t), feats)
        return feats

    def _cache_frame(self, t: int) -> None:
        if (self.key, t) not in self.cache:
            self.features(t)

    def _fits(self) -> bool:
        first = self.cache.peek((self.key, 0))
        return first is None or self.cache.room_for(nbytes(first))

    def close(self) -> None:
        """Stop the background encoding and free this session's cached features."""
        self.precompute.stop()
        self.cache.drop(self.key)

    # -- operations -----------------------------------------------------------------------------------
    @property
    def num_frames(self) -> int:
        return int(self.labels.shape[0])

    def _frame(self, op: dict[str, Any], key: str = "t") -> int:
        t = _int(op, key)
        if not 0 <= t < self.num_frames:
            raise AnnotateError(f"operation '{op.get('op')}': frame {t} is outside 0..{self.num_frames - 1}")
        return t

    def _cls(self, op: dict[str, Any], eraser: bool = False) -> int:
        c = _int(op, "cls")
        allowed = [0, *self.ops.classes] if eraser else self.ops.classes
        if c not in allowed:
            raise AnnotateError(f"operation '{op.get('op')}': class {c} is not one of the run's classes "
                                f"{self.ops.classes}" + (" (0: eraser)" if eraser else ""))
        return c

    def apply(self, op: dict[str, Any]) -> dict[str, Any]:
        """Run one operation (module docstring), log it and return ``{"frames": changed frame indices}``
        (plus ``"method"`` for propagate). An AnnotateError for a bad operation; the session is unchanged."""
        if not isinstance(op, dict) or op.get("op") not in OPS:
            name = op.get("op") if isinstance(op, dict) else op
            raise AnnotateError(f"unknown operation {name!r}; operations are: {', '.join(OPS)}")
        with self.lock:
            handler: Callable[[dict[str, Any]], dict[str, Any]] = getattr(self, f"_op_{op['op']}")
            result = handler(op)
            self.log.append(dict(op))
            return result

    def _commit(self, name: str, labels: dict[int, np.ndarray],
                prompts: dict[tuple[int, int], Clicks | None] | None = None) -> dict[str, Any]:
        step = Step(name)
        for t, new in labels.items():
            step.labels_before[t], step.labels_after[t] = self.labels[t].copy(), new
            step.labeled_before[t], step.labeled_after[t] = bool(self.labeled[t]), True
        for key, clicks in (prompts or {}).items():
            step.prompts_before[key], step.prompts_after[key] = self.prompts.get(key), clicks
        self._restore(step.labels_after, step.prompts_after, step.labeled_after)
        self.history.push(step)
        return {"frames": sorted(labels)}

    def _restore(self, labels: dict[int, np.ndarray], prompts: dict[tuple[int, int], Clicks | None],
                 labeled: dict[int, bool]) -> None:
        for t, lab in labels.items():
            self.labels[t] = lab
        for t, flag in labeled.items():
            self.labeled[t] = flag
        for key, clicks in prompts.items():
            if clicks is None:
                self.prompts.pop(key, None)
            else:
                self.prompts[key] = clicks

    def _with_mask(self, t: int, cls: int, clicks: Clicks) -> np.ndarray:
        """Frame t's label map with class `cls` replaced by the decoder's mask for `clicks`."""
        mask = self.ops.prompt_mask(self.features(t), clicks, self.labels.shape[1:])
        new = self.labels[t].copy()
        new[new == cls] = 0
        new[mask] = cls
        return new

    def _op_click(self, op: dict[str, Any]) -> dict[str, Any]:
        t, cls = self._frame(op), self._cls(op)
        x, y = _float(op, "x"), _float(op, "y")
        old = self.prompts.get((t, cls), Clicks([]))
        clicks = replace(old, points=[*old.points, (x, y, 1 if op.get("positive", True) else 0)])
        return self._commit("click", {t: self._with_mask(t, cls, clicks)}, {(t, cls): clicks})

    def _op_box(self, op: dict[str, Any]) -> dict[str, Any]:
        t, cls = self._frame(op), self._cls(op)
        x0, y0, x1, y1 = (_float(op, k) for k in ("x0", "y0", "x1", "y1"))
        box = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
        old = self.prompts.get((t, cls), Clicks([]))
        clicks = replace(old, box=box)
        return self._commit("box", {t: self._with_mask(t, cls, clicks)}, {(t, cls): clicks})

    def _op_clear(self, op: dict[str, Any]) -> dict[str, Any]:
        t, cls = self._frame(op), self._cls(op)
        new = self.labels[t].copy()
        new[new == cls] = 0
        return self._commit("clear", {t: new}, {(t, cls): None})

    def _op_automatic(self, op: dict[str, Any]) -> dict[str, Any]:
        frames = range(self.num_frames) if op.get("t") is None else [self._frame(op)]
        hw = self.labels.shape[1:]
        new = {t: self.ops.automatic(self.features(t), hw) for t in frames}
        return self._commit("automatic", new)

    def _op_propagate(self, op: dict[str, Any]) -> dict[str, Any]:
        t = self._frame(op)
        direction = op.get("direction", "forward")
        if direction not in ("forward", "backward"):
            raise AnnotateError(f"propagate: direction must be 'forward' or 'backward', got {direction!r}")
        last = self.num_frames - 1 if direction == "forward" else 0
        stop = last if op.get("to") is None else self._frame(op, "to")
        order = list(range(t, stop + 1)) if direction == "forward" else list(range(t, stop - 1, -1))
        if len(order) < 2:
            raise AnnotateError(f"propagate: nothing to propagate to {direction} from frame {t}; pick another "
                                f"frame or direction")
        new: dict[int, np.ndarray] = {}
        self.last_method = self.ops.propagate(order, self.labels[t].copy(), self.features,
                                              self.labels.shape[1:], new.__setitem__)
        result = self._commit("propagate", new)
        return {**result, "method": self.last_method}

    def _op_brush(self, op: dict[str, Any]) -> dict[str, Any]:
        t, cls = self._frame(op), self._cls(op, eraser=True)
        radius = _float(op, "radius")
        points = op.get("points")
        if not isinstance(points, list) or not points or len(points) > MAX_BRUSH_POINTS:
            raise AnnotateError(f"brush: 'points' must be a list of 1..{MAX_BRUSH_POINTS} [x, y] pairs")
        try:
            pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        except (TypeError, ValueError):
            raise AnnotateError("brush: 'points' must be [x, y] number pairs") from None
        if not 0 < radius <= 500 or not np.isfinite(pts).all():
            raise AnnotateError(f"brush: radius must be in (0, 500] pixels and points finite, got radius {radius}")
        new = self.labels[t].copy()
        new[stroke_mask(pts, radius, new.shape)] = cls
        return self._commit("eraser" if cls == 0 else "brush", {t: new})

    def _op_undo(self, op: dict[str, Any]) -> dict[str, Any]:
        step = self.history.pop_undo()
        if step is None:
            return {"frames": []}
        self._restore(step.labels_before, step.prompts_before, step.labeled_before)
        return {"frames": sorted(step.labels_before)}

    def _op_redo(self, op: dict[str, Any]) -> dict[str, Any]:
        step = self.history.pop_redo()
        if step is None:
            return {"frames": []}
        self._restore(step.labels_after, step.prompts_after, step.labeled_after)
        return {"frames": sorted(step.labels_after)}

    # -- read-outs ------------------------------------------------------------------------------------
    def lv_class(self) -> int:
        names = list(self.ops.run.class_names)
        return self.ops.classes[names.index("LV")] if "LV" in names else self.ops.classes[0]

    def clinical(self) -> dict[str, Any]:
        """The LV-area curve (mm² with a known spacing, else px²), ED/ES and the single-plane area-length
        EF (samfx.deploy.caveats, with its withholding rules), labelled with the method and the model's
        provenance (trained only on synthetic data or not)."""
        lv = self.lv_class()
        px = (self.labels == lv).reshape(self.num_frames, -1).sum(1).astype(float)
        sp = self.loop.spacing
        areas = px * sp[0] * sp[1] if sp else px
        prov = provenance({"recipe": self.ops.run.recipe.config})
        synthetic = bool(prov["synthetic_only"])
        out: dict[str, Any] = {"lv_class": lv, "areas": areas.tolist(), "unit": "mm²" if sp else "px²",
                               "ef_method": EF_METHOD, "trained_on": prov["trained_on"],
                               "synthetic_only": synthetic, "clinical_use": NOT_CLINICAL if synthetic else None,
                               "ed": None, "es": None, "ef_estimate": None}
        if self.num_frames < 2 or not px.any():
            out["withheld"] = "needs a loop of two or more frames with an LV mask"
            return out
        extra = {"fps": self.loop.fps}
        try:
            out.update(clinical_readout(self.labels, lv, sp, extra, self.loop.frames))
        except Exception as exc:  # a clinical rule failing must not break the page
            out["withheld"] = f"{type(exc).__name__}: {exc}"
        return out

    def prompts_on(self, t: int) -> list[dict[str, Any]]:
        return [{"cls": c, "points": [list(p) for p in v.points], "box": list(v.box) if v.box else None}
                for (f, c), v in sorted(self.prompts.items()) if f == t]

    def state(self) -> dict[str, Any]:
        t, h, w = self.loop.shape
        return {"name": self.loop.name, "frames": t, "height": h, "width": w, "fps": self.loop.fps,
                "spacing": self.loop.spacing, "classes": self.ops.classes,
                "class_names": list(self.ops.run.class_names), "labeled": self.labeled.tolist(),
                "history": self.history.counts(), "embedding": self.precompute.progress(),
                "temporal": self.ops.has_temporal, "ops": len(self.log), "last_method": self.last_method}

    def document(self) -> dict[str, Any]:
        """The session as JSON: where the loop came from and every operation, to reopen it by replaying."""
        return {"samfx_annotate": 1, "source": self.loop.source, "item": self.loop.name,
                "shape": list(self.loop.shape), "classes": self.ops.classes,
                "class_names": list(self.ops.run.class_names), "ops": list(self.log)}

    def replay(self, ops: list[dict[str, Any]]) -> None:
        """Apply a saved session's operations in order (see :meth:`document`)."""
        for op in ops:
            self.apply(op)


def stroke_mask(points: np.ndarray, radius: float, shape: tuple[int, ...]) -> np.ndarray:
    """(H,W) bool: discs of `radius` along the polyline through `points` (x, y), one every half radius."""
    h, w = int(shape[0]), int(shape[1])
    dense = [points[0]]
    for a, b in zip(points[:-1], points[1:]):
        n = max(1, int(np.ceil(np.hypot(*(b - a)) / max(radius / 2, 0.5))))
        dense += [a + (b - a) * k / n for k in range(1, n + 1)]
    rows, cols = np.ogrid[:h, :w]
    out = np.zeros((h, w), bool)
    r = int(np.ceil(radius))
    for x, y in dense:
        y0, y1 = max(0, int(y) - r), min(h, int(y) + r + 2)
        x0, x1 = max(0, int(x) - r), min(w, int(x) + r + 2)
        if y0 >= y1 or x0 >= x1:
            continue
        out[y0:y1, x0:x1] |= (rows[y0:y1] - y) ** 2 + (cols[:, x0:x1] - x) ** 2 <= radius ** 2
    return out
