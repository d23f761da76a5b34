"""Reading .npz files that may be damaged or hostile, without unpickling or over-allocating."""
from __future__ import annotations

import tokenize
import zipfile
from pathlib import Path

import numpy as np

MAX_MEMBER_BYTES = 4 << 30  # a session member larger than this is not one we wrote


class SafeNpz:
    """Read-only view of an .npz that checks each member's .npy header before allocating.

    Why: ``np.load`` allocates whatever shape a member's header claims, and a flipped bit
    in a compressed member surfaces as ``zlib.error``; a session file is untrusted input,
    so every problem must become a SessionError naming the file.
    """

    def __init__(self, path: Path):
        self.path = path
        self.zf = zipfile.ZipFile(path)
        self.files = [n[:-4] for n in self.zf.namelist() if n.endswith(".npy")]

    def __enter__(self) -> SafeNpz:
        return self

    def __exit__(self, *exc: object) -> None:
        self.zf.close()

    def __getitem__(self, key: str) -> np.ndarray:
        try:
            info = self.zf.getinfo(f"{key}.npy")
        except KeyError:
            raise KeyError(f"member {key!r} missing") from None
        with self.zf.open(info) as f:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            try:
                shape, fortran, dtype = read_header(f)
            except (SyntaxError, tokenize.TokenError, TypeError) as exc:  # numpy parses the header as Python text
                raise ValueError(f"member {key!r} has a damaged header ({type(exc).__name__})") from exc
            if dtype.hasobject:
                raise ValueError(f"Object arrays cannot be loaded: member {key!r} would need unpickling (refused)")
            nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
            if nbytes > MAX_MEMBER_BYTES or nbytes != info.file_size - f.tell():
                raise ValueError(f"member {key!r} claims shape {shape} ({nbytes:,} bytes) but holds "
                                 f"{info.file_size - f.tell():,} bytes")
            data = f.read(nbytes)
            if len(data) != nbytes or f.read(1):
                raise ValueError(f"member {key!r} is truncated")
        a = np.frombuffer(data, dtype=dtype)
        return (a.reshape(shape[::-1]).T if fortran else a.reshape(shape)).copy()
