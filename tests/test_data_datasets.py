"""torch datasets over a store: shapes, dtypes, spacing after resize, augmentation, workers."""
import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from samfx.contracts.errors import DataError
from samfx.data import augment as aug
from samfx.data.datasets import ClipDataset, ImageDataset, SequenceDataset
from samfx.data.store import StoreWriter


@pytest.fixture()
def store(tmp_path):
    """p1: single ED/ES images (40x20) + a sequence; p2: a 5-frame sequence (30x60), ED/ES labeled."""
    path = tmp_path / "s.h5"
    rng = np.random.default_rng(0)
    with StoreWriter(path, [1, 2, 3], ["LV", "MYO", "LA"]) as w:
        for phase in ("ED", "ES"):
            lab = np.zeros((40, 20), np.uint8)
            lab[10:30, 5:15] = 1
            w.add_image(f"p1_2CH_{phase}", rng.integers(0, 255, (40, 20)), lab, patient="p1", view="2CH",
                        phase=phase, spacing=(0.2, 0.4))
        w.add_sequence("p1_2CH_seq", rng.integers(0, 255, (3, 40, 20)), np.ones((3, 40, 20)), patient="p1",
                       view="2CH", spacing=(0.2, 0.4), ed=0, es=2, ef=50.0)
        labels = np.zeros((5, 30, 60), np.uint8)
        labels[1, 5:20, 10:50] = 2
        labels[4, 5:10, 10:20] = 3
        flags = [False, True, False, False, True]
        w.add_sequence("p2_4CH_seq", rng.integers(0, 255, (5, 30, 60)), labels, flags, patient="p2", view="4CH",
                       spacing=(0.5, 0.25), ed=1, es=4, ef=42.0)
        w.set_split("train", patients=["p1", "p2"])
        w.set_split("test", patients=["p2"])
    return path


def test_image_dataset_items(store):
    ds = ImageDataset(store, "train", 32)
    # p1: the ED/ES images (its sequence's ED/ES frames are the same views: skipped); p2: frames 1 and 4
    assert [(e[0].id, e[1], e[2]) for e in ds.entries] == [
        ("p1_2CH_ED", -1, "ED"), ("p1_2CH_ES", -1, "ES"), ("p2_4CH_seq", 1, "ED"), ("p2_4CH_seq", 4, "ES")]
    it = ds[0]
    assert it["image"].shape == (3, 32, 32) and it["image"].dtype == torch.float32
    assert 0 <= it["image"].min() and it["image"].max() <= 1
    assert torch.equal(it["image"][0], it["image"][2])
    assert it["label"].shape == (32, 32) and it["label"].dtype == torch.int64
    assert set(it["label"].unique().tolist()) == {0, 1}
    # 40 rows * 0.2 mm / 32 px, 20 cols * 0.4 mm / 32 px
    assert torch.allclose(it["spacing"], torch.tensor([0.25, 0.25])) and it["spacing"].dtype == torch.float32
    assert (it["patient"], it["view"], it["phase"], it["index"]) == ("p1", "2CH", "ED", 0)
    it = ds[2]
    assert torch.allclose(it["spacing"], torch.tensor([30 * 0.5 / 32, 60 * 0.25 / 32]))
    assert set(it["label"].unique().tolist()) == {0, 2} and it["id"] == "p2_4CH_seq#1"


def test_sequence_frames_modes(store):
    assert len(ImageDataset(store, "test", 16, sequence_frames="labeled")) == 2
    assert len(ImageDataset(store, "train", 16, sequence_frames="none")) == 2
    with pytest.raises(DataError, match="split 'test' has no labeled images"):
        ImageDataset(store, "test", 16, sequence_frames="none")
    with pytest.raises(DataError, match="sequence_frames: 'all' is not one of"):
        ImageDataset(store, "test", 16, sequence_frames="all")


def test_resize_is_bilinear_for_images_nearest_for_labels():
    img = np.zeros((1, 8, 8), np.uint8)
    img[0, :, 4:] = 255
    lab = np.zeros((1, 8, 8), np.uint8)
    lab[0, :, 4:] = 3
    x, y = aug.resize(img, lab, 16)
    assert x.shape == (1, 1, 16, 16) and y.shape == (1, 16, 16)
    assert set(y.unique().tolist()) == {0, 3} and (y[0, :, :8] == 0).all() and (y[0, :, 8:] == 3).all()
    assert 0 < x[0, 0, 0, 7] < 1  # interpolated edge


def test_augmentation_is_deterministic_per_seed_epoch_index(store):
    cfg = {"rotation": 30.0, "scale": [0.8, 1.2], "gamma": [0.7, 1.4], "contrast": 0.3}
    a = ImageDataset(store, "train", 32, augment=cfg, seed=1)
    b = ImageDataset(store, "train", 32, augment=cfg, seed=1)
    assert torch.equal(a[1]["image"], b[1]["image"]) and torch.equal(a[1]["label"], b[1]["label"])
    plain = ImageDataset(store, "train", 32)[1]
    assert not torch.equal(a[1]["image"], plain["image"])
    first = a[1]["image"]
    a.set_epoch(1)
    assert not torch.equal(a[1]["image"], first)
    assert set(a[1]["label"].unique().tolist()) <= {0, 1}
    p = aug.draw_params(aug.check_augment(cfg), 1, 1, 1)
    assert torch.allclose(a[1]["spacing"], torch.tensor([0.25, 0.25]) / p.scale)


def test_augment_config_errors():
    with pytest.raises(DataError, match="augment.rotaton: unknown key, did you mean 'rotation'?"):
        aug.check_augment({"rotaton": 5})
    with pytest.raises(DataError, match=r"augment.scale: expected \[low, high\]"):
        aug.check_augment({"scale": [1.2, 0.9]})
    assert aug.check_augment(None) is None and aug.check_augment({})["hflip"] is False


def test_clip_dataset_shares_augmentation_across_frames(tmp_path):
    path = tmp_path / "c.h5"
    frame = np.random.default_rng(0).integers(0, 255, (24, 24))
    lab = np.zeros((24, 24), np.uint8)
    lab[4:12, 6:20] = 1
    with StoreWriter(path, [1], ["LV"]) as w:
        w.add_sequence("s", np.stack([frame] * 6), np.stack([lab] * 6), [True] * 6, patient="p", ed=0, es=5)
        w.set_split("train", patients=["p"])
    ds = ClipDataset(path, "train", 16, clip_length=4, augment={"rotation": 40.0}, seed=3)
    it = ds[0]
    assert it["frames"].shape == (4, 3, 16, 16) and it["labels"].shape == (4, 16, 16)
    assert it["labeled"].dtype == torch.bool and it["labeled"].all()
    for t in range(1, 4):
        assert torch.equal(it["frames"][t], it["frames"][0]) and torch.equal(it["labels"][t], it["labels"][0])
    assert it["frame_index"].tolist() == list(range(it["frame_index"][0], it["frame_index"][0] + 4))


def test_clip_windows_hold_labeled_frames_and_pad(store):
    ds = ClipDataset(store, "test", 16, clip_length=2)
    for epoch in range(6):
        ds.set_epoch(epoch)
        assert ds[0]["labeled"].any()
    long = ClipDataset(store, "test", 16, clip_length=7)
    it = long[0]
    assert it["frame_index"].tolist() == [0, 1, 2, 3, 4, 4, 4]
    assert it["labeled"].tolist() == [False, True, False, False, True, False, False]
    with pytest.raises(DataError, match="clip_length must be >= 1"):
        ClipDataset(store, "test", 16, clip_length=0)


def test_clip_labels_ed_es_keeps_only_the_ed_and_es_labels(store):
    # p1's sequence: all 3 frames labeled, ED 0 / ES 2; p2's: frames 1 and 4 labeled, ED 1 / ES 4
    every = ClipDataset(store, "train", 16, clip_length=3)
    sparse = ClipDataset(store, "train", 16, clip_length=3, labels="ed_es")
    assert every.labeled[0] == [True, True, True] and sparse.labeled[0] == [True, False, True]
    assert sparse.labeled[1] == [False, True, False, False, True]
    for epoch in range(5):
        sparse.set_epoch(epoch)
        it = sparse[0]
        assert it["labeled"].tolist() == [True, False, True]
        assert it["labeled"].any() and sparse[1]["labeled"].any()   # windows still hold a label
    with pytest.raises(DataError, match="clip labels: 'sparse' is not one of all, ed_es"):
        ClipDataset(store, "train", 16, clip_length=3, labels="sparse")


def test_sequence_dataset(store):
    ds = SequenceDataset(store, "test", 24)
    it = ds[0]
    assert it["frames"].shape == (5, 3, 24, 24) and it["labels"].shape == (5, 24, 24)
    assert it["labeled"].tolist() == [False, True, False, False, True]
    assert (it["ed"], it["es"], float(it["ef"])) == (1, 4, 42.0)
    assert torch.allclose(it["spacing"], torch.tensor([15 / 24, 15 / 24]))


def test_handle_is_lazy_per_process_and_not_pickled(store):
    ds = ImageDataset(store, "train", 16)
    assert ds._file is None
    ds[0]
    assert ds._file is not None
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._file is None and torch.equal(clone[0]["image"], ds[0]["image"])
    batches = list(DataLoader(ds, batch_size=2, num_workers=2))
    assert len(batches) == 2 and batches[0]["image"].shape == (2, 3, 16, 16)
    assert batches[0]["spacing"].shape == (2, 2)
    ds.close()
