"""WebDataset tars: byte-identical to what tarfile writes, read back member by member, and where each member lies."""

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
    assert list(tario.write_tar(uri, members)) == [name for name, _ in members]
    assert (tmp_path / "00000.tar").read_bytes() == _with_tarfile(members)
    assert list(tario.read_tar(uri)) == members


def test_empty_tar(tmp_path):
    uri = str(tmp_path / "e.tar")
    assert tario.write_tar(uri, []) == {}
    assert (tmp_path / "e.tar").read_bytes() == _with_tarfile([])
    assert list(tario.read_tar(uri)) == []


def _tarfile_spans(path) -> dict[str, tuple[int, int]]:
    with tarfile.open(path) as tar:
        return {m.name: (m.offset_data, m.size) for m in tar.getmembers() if m.isfile()}


def test_reported_spans_are_where_each_members_bytes_lie(tmp_path):
    sizes = [0, 1, 511, 512, 513, 1024, 700, 0, 3000]  # empty, on and off the 512-byte blocks
    members = [(f"{i:04d}.jpg", bytes([i + 1]) * n) for i, n in enumerate(sizes)]
    members.append(("d" * 60 + "/" + "n" * 90 + ".jpg", b"prefix field"))  # name split over USTAR prefix
    path = tmp_path / "a.tar"
    spans = tario.write_tar(str(path), members)
    assert spans == _tarfile_spans(path)
    data = path.read_bytes()
    assert [data[offset:offset + size] for offset, size in spans.values()] == [d for _, d in members]
