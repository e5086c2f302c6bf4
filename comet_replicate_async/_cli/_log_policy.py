"""What the command line does with the library's log records.

The library logs for programs (a WARNING per prediction left running at a stop,
an ERROR when a batch stops creating); the command line says what matters in its
own lines instead (the `error:` line, the summary, the resume hint). So without
`--debug` the library's records are not printed at all, and with it every record
from DEBUG up goes to stderr, for a bug report.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["LIBRARY_LOGGER", "apply_log_policy"]

LIBRARY_LOGGER = "comet_replicate_async"
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The name of the handler this module installs, so a second call replaces it.
_HANDLER = "comet-replicate-cli"


def apply_log_policy(*, debug: bool) -> None:
    """Hide the library's records, or show them all with `--debug`."""
    logger = logging.getLogger(LIBRARY_LOGGER)
    for old in [h for h in logger.handlers if h.get_name() == _HANDLER]:
        logger.removeHandler(old)
    handler: logging.Handler
    if debug:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(_FORMAT))
        logger.setLevel(logging.DEBUG)
    else:
        # Without any handler, Python would print WARNING and above raw (its
        # last-resort handler); this one drops them.
        handler = logging.NullHandler()
    handler.set_name(_HANDLER)
    logger.addHandler(handler)
