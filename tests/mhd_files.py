"""Writing MetaImage files for tests, from the format's description (not with samfx's reader's code):
x (columns) varies fastest on disk, DimSize and ElementSpacing list x first."""
from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

TYPES = {np.dtype("u1"): "MET_UCHAR", np.dtype("i1"): "MET_CHAR", np.dtype("u2"): "MET_USHORT",
         np.dtype("i2"): "MET_SHORT", np.dtype("i4"): "MET_INT", np.dtype("f4"): "MET_FLOAT",
         np.dtype("f8"): "MET_DOUBLE"}


def write_mhd(path: Path, array: np.ndarray, spacing_xy: tuple[float, ...], *, msb: bool = False,
              compress: bool = False, local: bool = False, extra: str = "") -> Path:
    """`array` in numpy order ((rows, cols) or (frames, rows, cols)) as `path` (.mhd + .raw/.zraw,
    or one .mha with `local`), in the header style of the CAMUS 2019 files."""
    a = np.asarray(array)
    dims = list(reversed(a.shape))  # x first
    data = a.astype(a.dtype.newbyteorder(">" if msb else "<")).tobytes(order="C")
    if compress:
        data = zlib.compress(data)
    raw_name = "LOCAL" if local else path.with_suffix(".zraw" if compress else ".raw").name
    matrix = " ".join("1" if i == j else "0" for i in range(a.ndim) for j in range(a.ndim))
    header = (f"ObjectType = Image\nNDims = {a.ndim}\nBinaryData = True\n"
              f"BinaryDataByteOrderMSB = {msb}\nCompressedData = {compress}\n"
              + (f"CompressedDataSize = {len(data)}\n" if compress else "")
              + f"TransformMatrix = {matrix}\nOffset = {' '.join('0' for _ in dims)}\n"
              f"CenterOfRotation = {' '.join('0' for _ in dims)}\n"
              f"AnatomicalOrientation = {'RAI'[:a.ndim]}\n{extra}"
              f"ElementSpacing = {' '.join(str(s) for s in spacing_xy)}\n"
              f"DimSize = {' '.join(str(d) for d in dims)}\nElementType = {TYPES[a.dtype]}\n"
              f"ElementDataFile = {raw_name}\n")
    if local:
        path.write_bytes(header.encode() + data)
    else:
        path.write_text(header)
        path.with_name(raw_name).write_bytes(data)
    return path
