"""Decode worker process: reads length-framed image bodies on stdin, writes framed results on stdout.

Started by danqing.download.pool as `python -m danqing.download.worker`; its first frame is the
pickled decode Settings. No multiprocessing machinery: no re-import of the caller's __main__,
no feeder threads fighting the event loop for the GIL.
"""

from __future__ import annotations

import pickle
import struct
import sys

HEADER = struct.Struct(">I")


def read_frame(stream) -> bytes | None:
    head = stream.read(HEADER.size)
    if len(head) < HEADER.size:
        return None
    (n,) = HEADER.unpack(head)
    data = stream.read(n)
    return data if len(data) == n else None


def main() -> None:
    from danqing.download.decode import DOWNLOAD_UNDECODABLE, decode
    from danqing.download.pool import map_big_buffers

    widen_pipes()
    map_big_buffers()
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    settings = pickle.loads(read_frame(stdin))
    while (body := read_frame(stdin)) is not None:
        try:
            result = decode(body, settings)
        except Exception:  # noqa: BLE001 - one hostile image must not end the worker
            result = {"reason": DOWNLOAD_UNDECODABLE}
        out = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
        stdout.write(HEADER.pack(len(out)) + out)
        stdout.flush()


def widen_pipes() -> None:
    """1 MiB pipes (Linux): a whole result fits, so the worker goes on decoding while the parent is busy."""
    import fcntl

    for fd in (0, 1):
        try:
            fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
        except OSError:  # not a pipe, or above /proc/sys/fs/pipe-max-size: the default still works
            pass


if __name__ == "__main__":
    main()
