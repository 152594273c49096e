"""A reader of MetaImage files (``.mhd`` header + ``.raw``/``.zraw`` data, or one ``.mha`` file).

Only what image files use: ``NDims``, ``DimSize``, ``ElementSpacing`` (or ``ElementSize``),
``ElementType``, ``BinaryDataByteOrderMSB``/``ElementByteOrderMSB``, ``CompressedData`` (zlib),
``HeaderSize``, ``ElementNumberOfChannels`` = 1 and ``ElementDataFile`` (a file name next to the
header, or ``LOCAL`` for data after the header). Anything else the format allows (``LIST`` of
slice files, ASCII data, multi-channel pixels) is refused with an error naming the file and key.

Axis order: MetaImage stores x (columns) fastest, then y (rows), then z/t, and ``DimSize`` and
``ElementSpacing`` list x first. The array returned is in numpy order (t, rows, cols) /
(rows, cols): the reverse of ``DimSize``; the spacing is returned as written (x first).
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from samfx.contracts.errors import DataError

# MetaIO element types (fixed sizes; MET_LONG/MET_ULONG are left out: their size varies by writer)
ELEMENT_TYPES = {"MET_CHAR": "i1", "MET_UCHAR": "u1", "MET_SHORT": "i2", "MET_USHORT": "u2", "MET_INT": "i4",
                 "MET_UINT": "u4", "MET_LONG_LONG": "i8", "MET_ULONG_LONG": "u8", "MET_FLOAT": "f4",
                 "MET_DOUBLE": "f8"}
MAX_HEADER = 64 * 1024  # a header is a few hundred bytes; more means this is not one


@dataclass(frozen=True)
class MetaImage:
    """A MetaImage file's pixels in numpy axis order and its spacing in header order (x first)."""

    array: np.ndarray
    spacing: tuple[float, ...]
    header: dict[str, str]


def _header(path: Path) -> tuple[dict[str, str], int]:
    """(keys -> raw values, byte offset just after the header) of a MetaImage header file."""
    try:
        with path.open("rb") as fh:
            head = fh.read(MAX_HEADER)
    except OSError as exc:
        raise DataError(f"{path}: cannot read the MetaImage header ({exc.strerror or exc})") from None
    fields: dict[str, str] = {}
    offset = 0
    for raw in head.splitlines(keepends=True):
        offset += len(raw)
        try:
            line = raw.decode("ascii").strip()
        except UnicodeDecodeError:
            raise DataError(f"{path}: not a MetaImage header (binary bytes before ElementDataFile); the "
                            f"file is damaged or not .mhd/.mha") from None
        if not line:
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise DataError(f"{path}: header line {line[:60]!r} is not 'Key = Value'; the file is damaged "
                            f"or not a MetaImage header")
        fields[key.strip()] = value.strip()
        if key.strip() == "ElementDataFile":  # always the last key: pixel data may follow
            return fields, offset
    raise DataError(f"{path}: MetaImage header has no ElementDataFile line; the file is truncated or not "
                    f"a MetaImage header")


def _numbers(path: Path, fields: dict[str, str], key: str, kind: type, n: int) -> list:
    if key not in fields:
        raise DataError(f"{path}: MetaImage header has no {key}; the header is incomplete")
    try:
        values = [kind(v) for v in fields[key].split()]
    except ValueError:
        raise DataError(f"{path}: {key} = {fields[key]!r} is not a list of numbers") from None
    if len(values) != n:
        raise DataError(f"{path}: {key} has {len(values)} values but NDims is {n}")
    return values


def _flag(path: Path, fields: dict[str, str], *keys: str) -> bool:
    for key in keys:
        if key in fields:
            value = fields[key].lower()
            if value not in ("true", "false"):
                raise DataError(f"{path}: {key} = {fields[key]!r}; expected True or False")
            return value == "true"
    return False


def _payload(path: Path, fields: dict[str, str], end_of_header: int) -> tuple[bytes, Path]:
    """The stored pixel bytes (still compressed when CompressedData) and the file they come from."""
    name = fields["ElementDataFile"]
    if name.upper() == "LIST" or "%" in name:
        raise DataError(f"{path}: ElementDataFile = {name}: data split over several files is not supported; "
                        f"convert the image to one .mhd + .raw pair")
    source = path if name.upper() == "LOCAL" else path.parent / name
    try:
        data = source.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{source}: not found (the data file named by {path.name}); copy it next to the "
                        f"header") from None
    except OSError as exc:
        raise DataError(f"{source}: cannot read ({exc.strerror or exc})") from None
    skip = end_of_header if source == path else 0
    if "HeaderSize" in fields:
        size = _numbers(path, fields, "HeaderSize", int, 1)[0]
        skip = skip + size if size >= 0 else -1
    return (data[skip:] if skip >= 0 else data), source


def read_metaimage(path: str | Path) -> MetaImage:
    """The image of MetaImage header `path`; DataError naming the file on any problem."""
    path = Path(path)
    fields, end = _header(path)
    try:
        ndims = int(fields.get("NDims", ""))
    except ValueError:
        raise DataError(f"{path}: NDims = {fields.get('NDims')!r}; expected a whole number") from None
    dims = _numbers(path, fields, "DimSize", int, ndims)
    spacing_key = "ElementSpacing" if "ElementSpacing" in fields else "ElementSize"
    spacing = tuple(_numbers(path, fields, spacing_key, float, ndims)) if spacing_key in fields else (1.0,) * ndims
    etype = fields.get("ElementType", "")
    if etype not in ELEMENT_TYPES:
        raise DataError(f"{path}: ElementType = {etype!r} is not supported; expected one of "
                        f"{', '.join(ELEMENT_TYPES)}")
    if fields.get("ElementNumberOfChannels", "1") != "1":
        raise DataError(f"{path}: ElementNumberOfChannels = {fields['ElementNumberOfChannels']}; only "
                        f"single-channel images are supported")
    if fields.get("BinaryData", "True").lower() != "true":
        raise DataError(f"{path}: BinaryData = False (ASCII pixels) is not supported")
    msb = _flag(path, fields, "BinaryDataByteOrderMSB", "ElementByteOrderMSB")
    dtype = np.dtype(ELEMENT_TYPES[etype]).newbyteorder(">" if msb else "<")
    data, source = _payload(path, fields, end)
    expected = int(np.prod(dims)) * dtype.itemsize
    if _flag(path, fields, "CompressedData"):
        try:
            data = zlib.decompress(data, zlib.MAX_WBITS | 32)  # zlib or gzip stream
        except zlib.error as exc:
            raise DataError(f"{source}: compressed pixel data cannot be inflated ({exc}); the file is "
                            f"truncated or damaged, download it again") from None
    elif "HeaderSize" in fields and int(fields["HeaderSize"]) < 0:
        data = data[len(data) - expected:] if len(data) >= expected else data
    if len(data) != expected:
        raise DataError(f"{source}: holds {len(data)} bytes of pixels but {path.name} describes "
                        f"{' x '.join(map(str, dims))} {etype} = {expected} bytes; the file is truncated "
                        f"or does not belong to this header")
    array = np.frombuffer(data, dtype=dtype).reshape(tuple(reversed(dims)))
    return MetaImage(array.astype(dtype.newbyteorder("=")), spacing, fields)
