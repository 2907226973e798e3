"""Named arrays as ``.npz`` bytes, the way data sets are stored: no pickle, ever.

Reading does not stream each member through ``zipfile`` (in 256 kB pieces, with a CRC, then a
copy), which took 0.45 s for a 188 MB data set: members are stored uncompressed, so each array is
viewed in place in the bytes (``np.frombuffer``, read-only) in well under a millisecond. The
writer pads each member's local header (a zip "extra" field, as Android's zipalign does) so that
its data starts on a 64-byte boundary: an unaligned array would make every batch gather of
training many times slower. A member from another writer is copied when it is unaligned, and a
compressed one goes through ``np.load``; the files are ordinary ``.npz`` for ``np.load`` too.
"""

import io
import struct
import zipfile
from typing import BinaryIO

import numpy as np

LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature ... file name length, extra field length
PADDING_FIELD = struct.Struct("<HH")  # header id, data size
PADDING_ID = 0xD935  # the id zipalign uses for its padding
ALIGNMENT = 64  # .npy headers are padded to 64 bytes, so the data stays aligned after them


def arrays_to_npz(**arrays: np.ndarray) -> bytes:
    """Pack named arrays into ``.npz`` bytes (``write_npz``)."""
    buffer = io.BytesIO()
    write_npz(buffer, **arrays)
    return buffer.getvalue()


def write_npz(file: BinaryIO, **arrays: np.ndarray) -> int:
    """Pack named arrays into ``file`` (empty, at its start) as ``.npz``, each member's data
    64-byte aligned from the file's start (no pickle: object arrays are refused); return the
    size written. Each array goes in pieces straight into the archive: no copy of a data set
    is made on the way, and none is held when ``file`` is a file on disk."""
    with zipfile.ZipFile(file, "w", zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            array = np.asanyarray(array)
            info = zipfile.ZipInfo(f"{name}.npy")
            info.extra = aligning_extra(file.tell(), len(info.filename.encode()))
            info.file_size = array.nbytes  # so that zipfile knows whether it needs ZIP64
            with archive.open(info, "w") as member:
                np.lib.format.write_array(member, array, allow_pickle=False)
    return file.tell()


def aligning_extra(header_offset: int, name_length: int) -> bytes:
    """An extra field that puts the member data after a local header at ``header_offset`` on an
    ``ALIGNMENT`` boundary."""
    unpadded = header_offset + LOCAL_HEADER.size + name_length + PADDING_FIELD.size
    padding = -unpadded % ALIGNMENT
    return PADDING_FIELD.pack(PADDING_ID, padding) + bytes(padding)


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
    shape, fortran_order, dtype = read_npy_header(header, info.filename)
    if dtype.hasobject:
        raise ValueError(f"{info.filename}: object arrays would need pickle; refused")
    count = int(np.prod(shape, dtype=np.int64))
    array = np.frombuffer(member, dtype=dtype, count=count, offset=header.tell())
    array = array.reshape(shape, order="F" if fortran_order else "C")
    return array if array.flags.aligned else array.copy()


def read_npy_header(file: BinaryIO, name: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Shape, Fortran order and dtype from the ``.npy`` header at the start of ``file``, which
    is left at the array's data; ``ValueError`` for anything else."""
    version = np.lib.format.read_magic(file)
    read_header = {
        (1, 0): np.lib.format.read_array_header_1_0,
        (2, 0): np.lib.format.read_array_header_2_0,
    }.get(version)
    if read_header is None:
        raise ValueError(f"{name}: .npy version {version} is not supported")
    return read_header(file)
