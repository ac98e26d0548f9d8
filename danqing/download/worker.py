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


if __name__ == "__main__":
    main()
