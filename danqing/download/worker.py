"""Decode worker process: reads length-framed image bodies on stdin, writes framed results on stdout.

Started by danqing.download.pool as `python -m danqing.download.worker`; its first frame is the
pickled decode Settings. No multiprocessing machinery: no re-import of the caller's __main__,
no feeder threads fighting the event loop for the GIL.
"""

from __future__ import annotations

import pickle
import sys

from danqing.download.decode import DOWNLOAD_UNDECODABLE, decode
from danqing.download.frames import HEADER, read_frame, widen_pipes
from danqing.download.pool import map_big_buffers


def main() -> None:
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


if __name__ == "__main__":
    main()
