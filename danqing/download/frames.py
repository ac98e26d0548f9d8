"""Length-prefixed frames on pipes: how decode workers and fetch children talk to the process that started them."""

from __future__ import annotations

import struct

HEADER = struct.Struct(">I")  # a frame: its length, then its bytes


def read_frame(stream) -> bytes | None:
    head = stream.read(HEADER.size)
    if len(head) < HEADER.size:
        return None
    (n,) = HEADER.unpack(head)
    data = stream.read(n)
    return data if len(data) == n else None


def widen_pipes() -> None:
    """1 MiB pipes (Linux): a whole result fits, so the child goes on working while the parent is busy."""
    import fcntl

    for fd in (0, 1):
        try:
            fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
        except OSError:  # not a pipe, or above /proc/sys/fs/pipe-max-size: the default still works
            pass
