"""The command line with a disk that refuses output files, for the tests.

`python faulty_disk_cli.py ARGS...` runs `comet-replicate ARGS...`, except that
once `FAULTY_DISK_AFTER` output files were saved, each further one fails as the
disk would: with `FAULTY_DISK_ERRNO=ENOSPC` after part of the file was written
(a full disk), with `EACCES` when the file is opened (permission denied).

A test seam only: the variables are read here, in the tests, never by the
library, which sees the plain `OSError` a real disk raises.
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

from comet_replicate_async._sansio import RawResponse
from comet_replicate_async._transports.aiohttp import AiohttpTransport

AFTER = int(os.environ["FAULTY_DISK_AFTER"])
ERRNO = getattr(errno, os.environ.get("FAULTY_DISK_ERRNO", "ENOSPC"))
_saved = 0
_download = AiohttpTransport.download


async def _faulty_download(
    self: AiohttpTransport, url: str, destination: Path
) -> RawResponse | None:
    global _saved
    partial = destination.with_name(destination.name + ".part")
    if _saved >= AFTER:
        if ERRNO == errno.EACCES:
            raise PermissionError(ERRNO, os.strerror(ERRNO), str(partial))
        partial.write_bytes(b"\x89PNG half a file")
        raise OSError(ERRNO, os.strerror(ERRNO))  # a write() names no file
    _saved += 1
    return await _download(self, url, destination)


AiohttpTransport.download = _faulty_download  # type: ignore[method-assign]

if __name__ == "__main__":
    from comet_replicate_async._cli import main

    sys.exit(main(sys.argv[1:]))
