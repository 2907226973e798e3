"""Named arrays as ``.npz`` bytes, the way data sets are stored: no pickle, ever.

Reading does not stream each member through ``zipfile`` (in 256 kB pieces, with a CRC, then a
copy), which took 0.45 s for a 188 MB data set: ``np.savez`` stores members uncompressed, so
each array is viewed in place in the bytes (``np.frombuffer``, read-only) in about 0.04 s. A
compressed member, from another writer, goes through ``np.load`` as usual.
"""

import io
import struct
import zipfile

import numpy as np

LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature ... file name length, extra field length


def arrays_to_npz(**arrays: np.ndarray) -> bytes:
    """Pack named arrays into ``.npz`` bytes (no pickle: object arrays are refused)."""
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **arrays)
    return buffer.getvalue()


def npz_to_arrays(data: bytes) -> dict[str, np.ndarray]:
    """Unpack ``.npz`` bytes into ``{name: array}``; never unpickles (object arrays raise
    ``ValueError``)."""
    arrays = {}
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            name = info.filename.removesuffix(".npy")
            if info.compress_type == zipfile.ZIP_STORED:
                arrays[name] = array_in_place(data, info)
            else:
                arrays[name] = np.load(archive.open(info), allow_pickle=False)
    return arrays


def array_in_place(data: bytes, info: zipfile.ZipInfo) -> np.ndarray:
    """The ``.npy`` member ``info`` of the archive ``data`` as a read-only view of its bytes."""
    signature, name_length, extra_length = LOCAL_HEADER.unpack_from(data, info.header_offset)
    if signature != b"PK\x03\x04":
        raise ValueError(f"{info.filename}: not a zip member")
    start = info.header_offset + LOCAL_HEADER.size + name_length + extra_length
    member = memoryview(data)[start : start + info.file_size]
    header = io.BytesIO(member[: min(len(member), 65_536 + 16)])
    version = np.lib.format.read_magic(header)
    read_header = {
        (1, 0): np.lib.format.read_array_header_1_0,
        (2, 0): np.lib.format.read_array_header_2_0,
    }.get(version)
    if read_header is None:
        raise ValueError(f"{info.filename}: .npy version {version} is not supported")
    shape, fortran_order, dtype = read_header(header)
    if dtype.hasobject:
        raise ValueError(f"{info.filename}: object arrays would need pickle; refused")
    count = int(np.prod(shape, dtype=np.int64))
    array = np.frombuffer(member, dtype=dtype, count=count, offset=header.tell())
    return array.reshape(shape, order="F" if fortran_order else "C")
