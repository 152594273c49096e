"""MetaImage reader: axis order, spacing, element types, byte order, .zraw/.mha, and damaged files."""
import numpy as np
import pytest

from samfx.contracts.errors import DataError
from samfx.data.importers.metaimage import read_metaimage
from tests.mhd_files import write_mhd


def test_2d_axis_order_and_spacing(tmp_path):
    img = np.zeros((7, 5), np.uint8)  # 7 rows, 5 columns
    img[6, 1] = 200                    # row 6, column 1 -> x=1, y=6
    path = write_mhd(tmp_path / "a.mhd", img, (0.3, 0.15))
    assert "DimSize = 5 7" in path.read_text()  # x (columns) first, as the format says
    m = read_metaimage(path)
    assert m.array.shape == (7, 5) and m.array.dtype == np.uint8 and m.array[6, 1] == 200
    assert m.spacing == (0.3, 0.15) and m.header["ElementType"] == "MET_UCHAR"
    raw = (tmp_path / "a.raw").read_bytes()
    assert raw[6 * 5 + 1] == 200  # on disk: row-major with x fastest


def test_sequence_is_frames_rows_cols(tmp_path):
    seq = np.arange(3 * 4 * 6, dtype=np.uint8).reshape(3, 4, 6)
    m = read_metaimage(write_mhd(tmp_path / "s.mhd", seq, (0.2, 0.1, 1.0)))
    assert m.array.shape == (3, 4, 6) and np.array_equal(m.array, seq) and m.spacing == (0.2, 0.1, 1.0)


@pytest.mark.parametrize("dtype", ["u2", "i2", "f4", "f8", "i1"])
@pytest.mark.parametrize("msb", [False, True])
def test_element_types_and_byte_order(tmp_path, dtype, msb):
    a = (np.arange(12).reshape(3, 4) * 7 - 20).astype(dtype)
    m = read_metaimage(write_mhd(tmp_path / "t.mhd", a, (1, 1), msb=msb))
    assert m.array.dtype == np.dtype(dtype) and np.array_equal(m.array, a)


def test_zraw_and_local_mha(tmp_path):
    a = np.random.default_rng(0).integers(0, 255, (2, 9, 8)).astype(np.uint8)
    m = read_metaimage(write_mhd(tmp_path / "z.mhd", a, (0.5, 0.5, 1), compress=True))
    assert (tmp_path / "z.zraw").is_file() and np.array_equal(m.array, a)
    m = read_metaimage(write_mhd(tmp_path / "l.mha", a, (0.5, 0.5, 1), local=True))
    assert np.array_equal(m.array, a)
    m = read_metaimage(write_mhd(tmp_path / "lz.mha", a, (0.5, 0.5, 1), local=True, compress=True))
    assert np.array_equal(m.array, a)


def test_header_size_skips_a_preamble(tmp_path):
    a = np.arange(6, dtype=np.uint8).reshape(2, 3)
    path = write_mhd(tmp_path / "h.mhd", a, (1, 1), extra="HeaderSize = 4\n")
    (tmp_path / "h.raw").write_bytes(b"JUNK" + a.tobytes())
    assert np.array_equal(read_metaimage(path).array, a)


def _damaged(tmp_path, text):
    path = tmp_path / "bad.mhd"
    path.write_text(text)
    (tmp_path / "bad.raw").write_bytes(bytes(6))
    return path


@pytest.mark.parametrize("text, message", [
    ("NDims = 2\nDimSize = 3 2\nElementType = MET_UCHAR\n", r"bad.mhd: MetaImage header has no ElementDataFile"),
    ("NDims = 2\nElementType = MET_UCHAR\nElementDataFile = bad.raw\n", r"bad.mhd: MetaImage header has no DimSize"),
    ("NDims = 2\nDimSize = 3 x\nElementType = MET_UCHAR\nElementDataFile = bad.raw\n",
     r"bad.mhd: DimSize = '3 x' is not a list of numbers"),
    ("NDims = 3\nDimSize = 3 2\nElementType = MET_UCHAR\nElementDataFile = bad.raw\n",
     r"bad.mhd: DimSize has 2 values but NDims is 3"),
    ("NDims = 2\nDimSize = 3 2\nElementType = MET_RGB\nElementDataFile = bad.raw\n",
     r"bad.mhd: ElementType = 'MET_RGB' is not supported"),
    ("NDims = 2\nDimSize = 3 2\nElementType = MET_UCHAR\nBinaryDataByteOrderMSB = maybe\nElementDataFile = bad.raw\n",
     r"bad.mhd: BinaryDataByteOrderMSB = 'maybe'; expected True or False"),
    ("NDims = 2\nDimSize = 3 2\nElementType = MET_UCHAR\nElementDataFile = LIST\n",
     r"bad.mhd: ElementDataFile = LIST: data split over several files is not supported"),
    ("this is not a header\n", r"bad.mhd: header line 'this is not a header' is not 'Key = Value'"),
])
def test_bad_headers_name_the_file_and_key(tmp_path, text, message):
    with pytest.raises(DataError, match=message):
        read_metaimage(_damaged(tmp_path, text))


def test_binary_file_as_header(tmp_path):
    (tmp_path / "x.mhd").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe")
    with pytest.raises(DataError, match=r"x.mhd: not a MetaImage header"):
        read_metaimage(tmp_path / "x.mhd")


def test_truncated_missing_and_corrupt_data(tmp_path):
    a = np.ones((4, 5), np.uint8)
    path = write_mhd(tmp_path / "t.mhd", a, (1, 1))
    (tmp_path / "t.raw").write_bytes(bytes(11))
    with pytest.raises(DataError, match=r"t.raw: holds 11 bytes of pixels but t.mhd describes 5 x 4 MET_UCHAR = 20 b"):
        read_metaimage(path)
    (tmp_path / "t.raw").unlink()
    with pytest.raises(DataError, match=r"t.raw: not found \(the data file named by t.mhd\)"):
        read_metaimage(path)
    zpath = write_mhd(tmp_path / "z.mhd", a, (1, 1), compress=True)
    (tmp_path / "z.zraw").write_bytes((tmp_path / "z.zraw").read_bytes()[:6])
    with pytest.raises(DataError, match=r"z.zraw: compressed pixel data cannot be inflated"):
        read_metaimage(zpath)
