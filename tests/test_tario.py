"""WebDataset tars: byte-identical to what tarfile writes, and read back member by member."""

from __future__ import annotations

import io
import tarfile

from danqing import tario


def _with_tarfile(members) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_same_bytes_as_tarfile_and_round_trip(tmp_path):
    members = [(f"{i:016x}.jpg", bytes([i]) * (i * 700)) for i in range(20)]
    members += [("0" * 16 + ".txt", "中文说明".encode()), ("empty.json", b"")]
    uri = str(tmp_path / "00000.tar")
    assert tario.write_tar(uri, members) == len(members)
    assert (tmp_path / "00000.tar").read_bytes() == _with_tarfile(members)
    assert list(tario.read_tar(uri)) == members


def test_empty_tar(tmp_path):
    uri = str(tmp_path / "e.tar")
    assert tario.write_tar(uri, []) == 0
    assert (tmp_path / "e.tar").read_bytes() == _with_tarfile([])
    assert list(tario.read_tar(uri)) == []
