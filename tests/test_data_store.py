"""The HDF5 store: round trip, validation errors, atomic writes."""
import h5py
import numpy as np
import pytest

from samfx.contracts.errors import DataError
from samfx.data.store import StoreWriter, open_store, read_frames, read_index, read_sample, split_patients


def _write(path, **kw):
    img = np.arange(30 * 20, dtype=np.uint8).reshape(30, 20)
    lab = np.zeros((30, 20), np.uint8)
    lab[5:10, 5:10] = 1
    lab[12:14] = 3
    with StoreWriter(path, [1, 2, 3], ["LV", "MYO", "LA"], source="test") as w:
        w.add_image("p1_2CH_ED", img, lab, patient="p1", view="2CH", phase="ED", spacing=(0.3, 0.15), age=61)
        frames = np.stack([img] * 4)
        labels = np.stack([lab] * 4)
        w.add_sequence("p2_4CH", frames, labels, [True, False, False, True], patient="p2", view="4CH",
                       spacing=(0.5, 0.5), ed=0, es=3, ef=55.5, fps=25.0)
        w.set_split("train", patients=["p1"])
        w.set_split("test", ids=["p2_4CH"])
        for exc in kw.values():  # fail mid-import
            raise exc
    return img, lab


def test_round_trip(tmp_path):
    path = tmp_path / "s.h5"
    img, lab = _write(path)
    idx = read_index(path)
    assert idx.classes == [1, 2, 3] and idx.class_names == ["LV", "MYO", "LA"] and idx.source == "test"
    s = idx.items["p1_2CH_ED"]
    assert (s.kind, s.patient, s.view, s.phase, s.shape) == ("sample", "p1", "2CH", "ED", (30, 20))
    assert s.spacing == (0.3, 0.15) and s.attrs["age"] == 61
    q = idx.items["p2_4CH"]
    assert (q.kind, q.shape, q.ed, q.es, q.ef) == ("sequence", (4, 30, 20), 0, 3, 55.5)
    assert q.labeled == (True, False, False, True)
    assert [it.id for it in idx.in_split("train")] == ["p1_2CH_ED"]
    assert [it.id for it in idx.in_split("test")] == ["p2_4CH"]
    with open_store(path) as f:
        i2, l2 = read_sample(f, "p1_2CH_ED")
        assert np.array_equal(i2, img) and np.array_equal(l2, lab)
        fr, lb = read_frames(f, "p2_4CH", [3, 1, 3])
        assert fr.shape == (3, 30, 20) and np.array_equal(lb[0], lab)
        ds = f["samples/p1_2CH_ED/image"]
        assert ds.compression == "gzip" and ds.chunks == (30, 20)
        assert f["sequences/p2_4CH/frames"].chunks == (1, 30, 20)


def test_unknown_split_names_the_known_ones(tmp_path):
    _write(tmp_path / "s.h5")
    with pytest.raises(DataError, match=r"no split 'valid'; splits are: test, train"):
        read_index(tmp_path / "s.h5").in_split("valid")


def test_exception_mid_write_leaves_no_file(tmp_path):
    path = tmp_path / "s.h5"
    with pytest.raises(KeyboardInterrupt):
        _write(path, boom=KeyboardInterrupt())
    assert list(tmp_path.iterdir()) == []


def test_partial_name_until_done(tmp_path):
    path = tmp_path / "s.h5"
    with StoreWriter(path, [1], ["LV"]) as w:
        w.add_image("a", np.zeros((4, 4)), np.zeros((4, 4)), patient="a")
        assert not path.exists() and w.tmp.exists() and ".partial-" in w.tmp.name
    assert path.is_file() and not w.tmp.exists()


def test_label_outside_declared_set(tmp_path):
    with pytest.raises(DataError, match=r"img7.png: label ids \[5\] are outside the declared set \[0, 1\]"):
        with StoreWriter(tmp_path / "s.h5", [1], ["LV"]) as w:
            w.add_image("a", np.zeros((4, 4)), np.full((4, 4), 5), patient="a", source="img7.png")
    assert not (tmp_path / "s.h5").exists()


@pytest.mark.parametrize("bad,msg", [
    (dict(item_id="a/b"), "may use only letters"),
    (dict(image=np.full((4, 4), 300.0)), r"image must hold integers in 0..255"),
    (dict(label=np.zeros((4, 5))), r"image must be \(H,W\) with a label of the same shape"),
    (dict(spacing=(0.3,)), "spacing must be"),
])
def test_writer_rejects(tmp_path, bad, msg):
    args = dict(item_id="a", image=np.zeros((4, 4)), label=np.zeros((4, 4)), spacing=None) | bad
    with pytest.raises(DataError, match=msg):
        with StoreWriter(tmp_path / "s.h5", [1], ["LV"]) as w:
            w.add_image(args["item_id"], args["image"], args["label"], patient="p", spacing=args["spacing"])


def test_duplicate_id(tmp_path):
    with pytest.raises(DataError, match="item id 'a' written twice"):
        with StoreWriter(tmp_path / "s.h5", [1], ["LV"]) as w:
            w.add_image("a", np.zeros((4, 4)), np.zeros((4, 4)), patient="p")
            w.add_sequence("a", np.zeros((2, 4, 4)), patient="p")


def test_missing_dataset_names_file_and_item(tmp_path):
    path = tmp_path / "s.h5"
    _write(path)
    with h5py.File(path, "a") as f:
        del f["samples/p1_2CH_ED/label"]
    with pytest.raises(DataError, match=r"s.h5: /samples/p1_2CH_ED has no dataset 'label'"):
        read_index(path)


def test_missing_attribute(tmp_path):
    path = tmp_path / "s.h5"
    _write(path)
    with h5py.File(path, "a") as f:
        del f["sequences/p2_4CH"].attrs["ed"]
    with pytest.raises(DataError, match=r"/sequences/p2_4CH has no attribute 'ed'"):
        read_index(path)


def test_not_a_store(tmp_path):
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = 1
    with pytest.raises(DataError, match=r"other.h5: not a samfx store"):
        read_index(tmp_path / "other.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(DataError, match=r"junk.h5: not a readable HDF5 file"):
        read_index(tmp_path / "junk.h5")
    with pytest.raises(DataError, match=r"nope.h5: store file not found"):
        read_index(tmp_path / "nope.h5")


def test_split_patients_is_seeded_and_disjoint():
    pats = [f"p{i}" for i in range(10)]
    a, b = split_patients(pats, 0), split_patients(pats, 0)
    assert a == b and [len(a[k]) for k in ("train", "val", "test")] == [7, 1, 2]
    assert sorted(a["train"] + a["val"] + a["test"]) == sorted(pats)
    assert split_patients(pats, 1) != a
