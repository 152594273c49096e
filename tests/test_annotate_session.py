"""`samfx annotate`'s Python session API (samfx.deploy.annotate.session), the single source of truth of
the web app: clicks and boxes on cached embeddings, automatic, propagation (temporal module, else mask
prompts), brush, undo/redo, the clinical read-out, saving (PNG, NIfTI, store, session JSON) and reopening."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from samfx.deploy.annotate.access import AnnotateError
from samfx.deploy.annotate.features import FeatureCache
from samfx.deploy.annotate.loops import Loop, open_loop
from samfx.deploy.annotate.modelops import ModelOps
from samfx.deploy.annotate.save import load_document, save_all, save_store
from samfx.deploy.annotate.session import AnnotationSession, stroke_mask
from tests.test_annotate_support import CINE_ITEM, load, lv_center, synthetic_cine, train_clickable


@pytest.fixture(scope="module")
def run_dir(plugins, tmp_path_factory):
    return train_clickable(tmp_path_factory.mktemp("annotate"), plugins)


@pytest.fixture(scope="module")
def run(run_dir, plugins):
    return load(run_dir, plugins)


@pytest.fixture(scope="module")
def cine(tmp_path_factory):
    store = synthetic_cine(tmp_path_factory.mktemp("cine"))
    return open_loop(store, CINE_ITEM), lv_center(store)


def session(run, loop, **kw):
    return AnnotationSession(ModelOps(run), loop, precompute=False, **kw)


def test_clicks_decode_on_cached_features_and_undo_restores(run, cine):
    loop, (x, y) = cine
    s = session(run, loop)
    encoded = []
    real = s.ops.encode
    s.ops.encode = lambda frame: encoded.append(1) or real(frame)
    assert s.apply({"op": "click", "t": 0, "cls": 1, "x": x, "y": y}) == {"frames": [0]}
    first = s.labels[0].copy()
    assert (first == 1).any() and not s.labels[1:].any() and s.labeled.tolist() == [True] + [False] * 5
    s.apply({"op": "click", "t": 0, "cls": 1, "x": 2, "y": 2, "positive": False})
    s.apply({"op": "box", "t": 0, "cls": 2, "x0": 40, "y0": 30, "x1": 10, "y1": 5})
    assert len(encoded) == 1                          # one encoder pass; the other prompts reuse it
    assert s.prompts_on(0) == [{"cls": 1, "points": [[x, y, 1], [2.0, 2.0, 0]], "box": None},
                               {"cls": 2, "points": [], "box": [10.0, 5.0, 40.0, 30.0]}]
    after = s.labels[0].copy()
    s.apply({"op": "undo"})
    s.apply({"op": "undo"})
    assert np.array_equal(s.labels[0], first) and s.prompts_on(0)[0]["points"] == [[x, y, 1]]
    s.apply({"op": "redo"})
    s.apply({"op": "redo"})
    assert np.array_equal(s.labels[0], after) and s.history.counts() == {"undo": 3, "redo": 0}
    for _ in range(3):
        s.apply({"op": "undo"})
    assert not s.labels.any() and not s.labeled.any() and s.prompts == {}
    assert s.apply({"op": "undo"}) == {"frames": []}


def test_a_click_is_the_prompt_encoder_and_decoder_on_that_frame(run, cine):
    """The session's mask for a click equals the model's own: encode, prompt encoder, decoder, resize."""
    from samfx.contracts.interfaces import Prompts
    from samfx.deploy.predict import model_input

    loop, (x, y) = cine
    s = session(run, loop)
    s.apply({"op": "click", "t": 3, "cls": 1, "x": x, "y": y})
    m, size = run.model, run.model.image_size
    h, w = loop.frames.shape[1:]
    with torch.no_grad():
        feats = m.encode(model_input(loop.frames[3:4], size))
        pts = torch.tensor([[[(x + 0.5) * size / w - 0.5, (y + 0.5) * size / h - 0.5]]])
        sparse, dense = m.prompt_encoder.encode(1, points=(pts, torch.ones(1, 1, dtype=torch.long)))
        out = m.decode_prompts(feats, 1, m.prompt_encoder.get_dense_pe(), Prompts(sparse, dense), None)
        logits = torch.nn.functional.interpolate(out.logits, size=(h, w), mode="bilinear", align_corners=False)
    assert np.array_equal(s.labels[3] == 1, logits[0, 0].numpy() > 0)


def test_automatic_is_the_runs_own_segmentation(run, cine):
    loop, _ = cine
    s = session(run, loop)
    assert s.apply({"op": "automatic", "t": None})["frames"] == list(range(6))
    assert np.array_equal(s.labels, run.segment(loop.frames))
    s.apply({"op": "clear", "t": 2, "cls": int(np.bincount(s.labels[2].ravel(), minlength=4)[1:].argmax() + 1)})
    assert not np.array_equal(s.labels[2], run.segment(loop.frames[2]))


def test_propagation_through_the_temporal_module_is_forward_clip_with_a_given_first_mask(run, tmp_path):
    """With the loop at the model's size, propagating frame 0's labels equals forward_clip prompted on frame
    0 by the `masks` generator (the given mask) and unprompted after it."""
    from samfx.deploy.predict import model_input
    from samfx.engine.eval.inference import labels_from_logits
    from samfx_plugins.prompts.simulated import Masks

    size = run.model.image_size
    loop = open_loop(synthetic_cine(tmp_path, frames=5).parent / "cine.h5", CINE_ITEM)
    loop = Loop("small", np.stack([np.asarray(f)[:size, :size] for f in loop.frames]), (0.3, 0.3))
    s = session(run, loop)
    s.apply({"op": "brush", "t": 0, "cls": 1, "radius": 6, "points": [[14, 14], [18, 16]]})
    s.apply({"op": "brush", "t": 0, "cls": 3, "radius": 3, "points": [[25, 26]]})
    result = s.apply({"op": "propagate", "t": 0, "direction": "forward"})
    assert result == {"frames": [1, 2, 3, 4], "method": "temporal"}
    run.model.prompt_generators["masks"] = Masks()
    try:
        labels = torch.zeros(1, 5, size, size, dtype=torch.long)
        labels[0, 0] = torch.from_numpy(s.labels[0].astype(np.int64))
        labeled = torch.tensor([[True, False, False, False, False]])
        with torch.no_grad():
            clip = run.model.forward_clip(model_input(loop.frames, size).unsqueeze(0), run.classes, labels, labeled,
                                          prompt="masks", prompt_frames=[0])
    finally:
        del run.model.prompt_generators["masks"]
    present = [c for c in run.classes if (s.labels[0] == c).any()]
    assert present == [1, 3]
    logits = clip.logits[0].clone()                                  # (T,K,S,S)
    logits[:, [c not in present for c in run.classes]] = -1e4       # a class absent at the start stays absent
    expected = labels_from_logits(logits.reshape(-1, 1, size, size), 5, run.classes)[0].numpy()
    assert s.labels[1:].any()
    for t in range(1, 5):
        assert np.array_equal(s.labels[t], expected[t]), t


def test_propagation_without_memory_prompts_each_frame_with_the_previous_mask(run_dir, plugins, cine):
    from samfx.contracts.interfaces import Prompts, given_mask_logits
    from samfx.deploy.predict import model_input
    from samfx.engine.eval.inference import labels_from_logits

    plain = load(run_dir, plugins, temporal=False)
    loop, (x, y) = cine
    s = session(plain, loop)
    s.apply({"op": "click", "t": 3, "cls": 1, "x": x, "y": y})
    assert s.apply({"op": "propagate", "t": 3, "direction": "backward"}) == {"frames": [0, 1, 2],
                                                                             "method": "mask_prompt"}
    assert not s.labels[4:].any()
    m, size, k = plain.model, plain.model.image_size, len(plain.classes)
    h, w = loop.frames.shape[1:]
    start = torch.from_numpy(s.labels[3])
    masks = torch.stack([(start == c).float() for c in plain.classes])[:, None]
    previous = given_mask_logits(torch.nn.functional.interpolate(masks, size=(size, size), mode="area"),
                                 (4 * size // 4, 4 * size // 4))
    with torch.no_grad():
        for t in (2, 1, 0):
            sparse, dense = m.prompt_encoder.encode(k, masks=previous)
            feats = m.encode(model_input(loop.frames[t:t + 1], size))
            out = m.decode_prompts(feats, k, m.prompt_encoder.get_dense_pe(), Prompts(sparse, dense), None)
            previous = out.decoded.low_res[:, :1]
            logits = out.logits.clone()
            logits[masks.flatten(1).amax(1) == 0] = -1e4
            assert np.array_equal(s.labels[t], labels_from_logits(logits, 1, plain.classes, (h, w))[0][0].numpy())


def test_brush_eraser_and_bad_operations(run, cine):
    loop, _ = cine
    s = session(run, loop)
    s.apply({"op": "brush", "t": 1, "cls": 2, "radius": 2, "points": [[10, 10], [20, 10]]})
    painted = s.labels[1] == 2
    assert painted[10, 10:21].all() and painted[12, 15] and not painted[13, 15] and painted.sum() < 80
    s.apply({"op": "brush", "t": 1, "cls": 0, "radius": 2, "points": [[15, 10]]})
    assert not s.labels[1][10, 14:17].any() and s.labels[1][10, 10] == 2
    assert stroke_mask(np.array([[1000.0, 1000.0]]), 3, (10, 10)).sum() == 0
    for bad, words in (({"op": "dance"}, "unknown operation"), ({"op": "click", "t": 1, "cls": 1, "x": 1},
                       "'y' must be a number"), ({"op": "brush", "t": 1, "cls": 1, "radius": 2, "points": []},
                       "points"), ({"op": "propagate", "t": 5}, "nothing to propagate"),
                       ({"op": "click", "t": "a", "cls": 1, "x": 1, "y": 1}, "integer")):
        with pytest.raises(AnnotateError, match=words):
            s.apply(bad)
    assert len(s.log) == 2 and s.history.counts()["undo"] == 2


def test_feature_cache_is_bounded_and_precompute_stops_when_full(run, cine):
    loop, _ = cine
    one = ModelOps(run).encode(loop.frames[0])
    size = sum(t.numel() * t.element_size() for t in (one.embedding, *one.high_res))
    cache = FeatureCache(limit_mb=2.5 * size / 2**20)
    s = AnnotationSession(ModelOps(run), loop, cache=cache, key="a")
    s.precompute.thread.join(60)
    assert s.precompute.progress() == {"done": 2, "total": 6, "full": True, "error": None}
    assert cache.used <= cache.limit and len(cache._items) == 2
    s.features(5)
    assert ("a", 5) in cache and ("a", 0) not in cache            # least recently used went first
    s.close()
    assert cache.used == 0


def test_clinical_readout_names_its_method_and_provenance(run, cine):
    loop, _ = cine
    s = session(run, loop)
    c = s.clinical()
    assert c["withheld"] and c["ef_estimate"] is None and c["unit"] == "mm²"
    rows, cols = np.mgrid[:64, :72]
    for t, r in enumerate((14, 12, 9, 8, 10, 13)):        # an LV that shrinks and grows: ED 0, ES 3
        disc = ((rows - 32) / (1.6 * r)) ** 2 + ((cols - 36) / r) ** 2 <= 1
        s.apply({"op": "brush", "t": t, "cls": 1, "radius": 1, "points": np.argwhere(disc)[:, ::-1].tolist()})
    c = s.clinical()
    assert c["ef_method"] == "single-plane area-length" and c["trained_on"] == "toy/toy_data"
    assert c["synthetic_only"] is False
    assert np.argmax(c["areas"]) == 0 and np.argmin(c["areas"]) == 3
    assert (c["ed"], c["es"]) == (0, 3) or c["withheld"]
    assert c["areas"][0] == pytest.approx((s.labels[0] == 1).sum() * loop.spacing[0] * loop.spacing[1])
    from dataclasses import replace
    from types import SimpleNamespace

    for source, synthetic in (({"name": "datasets/synthetic_echo"}, True), ({"name": "synthetic_echo"}, True),
                              ([{"name": "synthetic_echo"}, {"name": "h5", "path": "x.h5"}], False)):
        other = replace(run, recipe=SimpleNamespace(config={"data": {"source": source}}))
        c = AnnotationSession(ModelOps(other), loop, precompute=False).clinical()
        assert c["synthetic_only"] is synthetic and (c["clinical_use"] is not None) is synthetic, source


def test_save_formats_and_reopening(run, cine, tmp_path):
    from samfx.data.images import read_image
    from samfx.data.store import open_store, read_frames, read_index

    loop, (x, y) = cine
    s = session(run, loop)
    s.apply({"op": "click", "t": 0, "cls": 1, "x": x, "y": y})
    s.apply({"op": "propagate", "t": 0})
    s.apply({"op": "brush", "t": 2, "cls": 3, "radius": 3, "points": [[60, 50]]})
    s.apply({"op": "undo"})
    with pytest.raises(AnnotateError, match="nothing is annotated"):
        save_store(session(run, loop), tmp_path / "x.h5")
    out = save_all(s, tmp_path / "out", ["png", "nifti", "json"], tmp_path / "new.h5", split="train", patient="p1")
    assert len(out["png"]) == 6 and read_image(tmp_path / "out" / f"cine-{CINE_ITEM}_label_0004.png",
                                                label=True)[0].tolist() == s.labels[4].tolist()
    arr, spacing = read_image(tmp_path / "out" / f"cine-{CINE_ITEM}_label.nii.gz", label=True)
    assert np.array_equal(arr, s.labels) and spacing == pytest.approx(loop.spacing, rel=1e-6)
    index = read_index(tmp_path / "new.h5")
    item = index.items[f"cine-{CINE_ITEM}"]
    assert item.patient == "p1" and item.labeled == (True,) * 6 and item.spacing == pytest.approx(loop.spacing)
    assert index.splits["train"][0] == {"p1"} and index.class_names == ["LV", "MYO", "LA"]
    again = save_store(s, tmp_path / "new.h5", patient="p2", split="val")   # append: the old item is kept
    index = read_index(tmp_path / "new.h5")
    assert again["id"] == f"cine-{CINE_ITEM}-2" and len(index.items) == 2
    assert index.splits["val"][0] == {"p2"} and index.splits["train"][0] == {"p1"}
    with open_store(tmp_path / "new.h5") as f:
        assert np.array_equal(read_frames(f, again["id"])[1], s.labels)
    doc = load_document(tmp_path / "out" / f"cine-{CINE_ITEM}.samfx-annotate.json")
    assert [o["op"] for o in doc["ops"]] == ["click", "propagate", "brush", "undo"]
    reopened = session(run, loop, key="again")
    reopened.replay(doc["ops"])
    assert np.array_equal(reopened.labels, s.labels) and reopened.history.counts() == s.history.counts()
    (tmp_path / "bad.json").write_text(json.dumps({"ops": []}))
    with pytest.raises(AnnotateError, match="not a samfx annotate session"):
        load_document(tmp_path / "bad.json")
