"""Deterministic WebDataset tars: sorted members, fixed metadata, so reruns give identical bytes."""

from __future__ import annotations

import io as _io
import tarfile
from collections.abc import Iterable, Iterator

from danqing import io


def write_tar(uri: str, members: Iterable[tuple[str, bytes]], storage_options: dict | None = None) -> int:
    """Write (name, data) members in the given order; returns how many were written."""
    n = 0
    with (io.atomic_write(uri, "wb", storage_options) as f,
          tarfile.open(fileobj=f, mode="w", format=tarfile.USTAR_FORMAT) as tar):
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            info.mode = 0o644
            tar.addfile(info, _io.BytesIO(data))
            n += 1
    return n


def read_tar(uri: str, storage_options: dict | None = None) -> Iterator[tuple[str, bytes]]:
    """Every (name, data) member of a tar, in file order."""
    with io.open_uri(uri, "rb", storage_options) as f, tarfile.open(fileobj=f, mode="r|") as tar:
        for info in tar:
            if info.isfile():
                yield info.name, tar.extractfile(info).read()
