"""WebDataset tars: byte-identical to what tarfile writes, and read back member by member."""

from __future__ import annotations

import io
import tarfile

import pytest

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


def _tarfile_spans(path) -> dict[str, tuple[int, int]]:
    with tarfile.open(path) as tar:
        return {m.name: (m.offset_data, m.size) for m in tar.getmembers() if m.isfile()}


def test_member_spans_reads_ustar_headers_as_tarfile_does(tmp_path):
    members = [(f"{i:04d}.jpg", bytes([i]) * (500 + i)) for i in range(20)]
    members.append(("d" * 60 + "/" + "n" * 90 + ".jpg", b"prefix field"))  # name split over USTAR prefix
    tario.write_tar(str(tmp_path / "a.tar"), members)
    spans = tario.member_spans(str(tmp_path / "a.tar"))
    assert spans == _tarfile_spans(tmp_path / "a.tar")
    data = (tmp_path / "a.tar").read_bytes()
    assert [data[o:o + n] for o, n in spans.values()] == [d for _, d in members]


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
def test_member_spans_hands_other_headers_to_tarfile(tmp_path, fmt):
    with tarfile.open(tmp_path / "a.tar", "w", format=fmt) as tar:
        for name, data in [("a.jpg", b"1" * 700), ("b" * 200 + ".jpg", b"22"), ("中文.jpg", b"333")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    spans = tario.member_spans(str(tmp_path / "a.tar"))
    assert set(spans) == {"a.jpg", "b" * 200 + ".jpg", "中文.jpg"}
    assert spans == _tarfile_spans(tmp_path / "a.tar")
