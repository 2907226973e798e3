"""Bytes without pickle: an ``.npz`` archive of plain numeric arrays plus a JSON header.

Loading uses ``allow_pickle=False`` and accepts only numeric arrays, so bytes from an untrusted
source can never run code; anything else raises :class:`CorruptFileError`.
"""

import io
import json
import zipfile

import numpy as np

from model_core.errors import CorruptFileError

HEADER = "header"
FORMAT_VERSION = 1


def pack(kind: str, header: dict, arrays: dict[str, np.ndarray]) -> bytes:
    """Writes ``arrays`` and ``header`` (JSON-serialisable) as one ``.npz`` archive."""
    document = {"format": kind, "version": FORMAT_VERSION, **header}
    encoded = np.frombuffer(json.dumps(document).encode("utf-8"), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **{HEADER: encoded}, **arrays)
    return buffer.getvalue()


def unpack(kind: str, data: bytes) -> tuple[dict, dict[str, np.ndarray]]:
    """Reads what :func:`pack` wrote, refusing pickles, other formats and non-numeric arrays."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CorruptFileError(f"expected bytes of a {kind} file, got {type(data).__name__}")
    try:
        with np.load(io.BytesIO(bytes(data)), allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        header = json.loads(arrays.pop(HEADER).tobytes().decode("utf-8"))
    except (
        ValueError,
        OSError,
        KeyError,
        EOFError,
        zipfile.BadZipFile,
        UnicodeDecodeError,
    ) as error:
        raise CorruptFileError(f"not a {kind} file: {error}") from None
    if not isinstance(header, dict) or header.get("format") != kind:
        raise CorruptFileError(f"not a {kind} file")
    if header.get("version") != FORMAT_VERSION:
        raise CorruptFileError(f"{kind} file version {header.get('version')} is not supported")
    for name, array in arrays.items():
        if array.dtype.kind not in "biuf":
            raise CorruptFileError(f"{kind} file: array {name!r} is not numeric")
    return header, arrays


def weight_arrays(weights) -> dict[str, np.ndarray]:
    """``[(W, b), ...]`` as the archive's ``W0, b0, W1, b1, ...`` entries."""
    arrays = {}
    for i, (w, b) in enumerate(weights):
        arrays[f"W{i}"] = w
        arrays[f"b{i}"] = b
    return arrays


def weights_from_arrays(arrays: dict[str, np.ndarray], n_layers: int, prefix: str = "") -> list:
    try:
        return [(arrays[f"{prefix}W{i}"], arrays[f"{prefix}b{i}"]) for i in range(n_layers)]
    except KeyError as missing:
        raise CorruptFileError(f"file lacks weight array {missing}") from None
