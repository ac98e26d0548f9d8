"""Deterministic WebDataset tars: members in the given order, fixed metadata, so reruns give
identical bytes. Headers are written directly: tarfile's addfile copies each header, which is
the serial tail of a download shard.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterable, Iterator

from danqing import io


def write_tar(uri: str, members: Iterable[tuple[str, bytes]],
              storage_options: dict | None = None) -> dict[str, tuple[int, int]]:
    """Write (name, data) members as a USTAR tar, the bytes tarfile itself would write.

    Returns name -> (offset of its data in the file, size), so a reader can seek straight to a
    member without a pass over the headers (on object storage, that pass reads the whole tar).
    A repeated name maps to its last copy, as in tarfile.
    """
    spans, written = {}, 0
    with io.atomic_write(uri, "wb", storage_options) as f:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            header = info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape")
            padding = -len(data) % tarfile.BLOCKSIZE
            f.write(header)
            f.write(data)
            f.write(b"\0" * padding)
            spans[name] = (written + len(header), len(data))
            written += len(header) + len(data) + padding
        end = 2 * tarfile.BLOCKSIZE  # two zero blocks, then zeros to a whole record, like tarfile.close()
        end += -(written + end) % tarfile.RECORDSIZE
        f.write(b"\0" * end)
    return spans


def read_tar(uri: str, storage_options: dict | None = None) -> Iterator[tuple[str, bytes]]:
    """Every (name, data) member of a tar, in file order."""
    with io.open_uri(uri, "rb", storage_options) as f, tarfile.open(fileobj=f, mode="r|") as tar:
        for info in tar:
            if info.isfile():
                yield info.name, tar.extractfile(info).read()

