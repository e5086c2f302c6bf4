"""What the command line does with the library's log records.

The library logs for programs (a WARNING per prediction left running at a stop,
an ERROR when a batch stops creating); the command line says what matters in its
own lines instead (the `error:` line, the summary, the resume hint). So without
`--debug` the library's records are not printed at all, and with it every record
from DEBUG up goes to stderr, for a bug report.

`batch --log-format json` is for log collectors instead: the library's records
(WARNING and up, DEBUG up with `--debug`) go to stderr as one JSON object a
line, with the `prediction_id`, `model` and `batch` the record carries.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

__all__ = ["LIBRARY_LOGGER", "JsonLines", "apply_log_policy"]

LIBRARY_LOGGER = "comet_replicate_async"
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The name of the handler this module installs, so a second call replaces it.
_HANDLER = "comet-replicate-cli"


# The attributes a record of the library may carry about a prediction.
_EXTRA = ("prediction_id", "model", "batch")


class JsonLines(logging.Formatter):
    """One JSON object per record: time, level, logger, message, and the
    prediction's attributes where the record has them."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(
            (name, str(getattr(record, name)))
            for name in _EXTRA
            if getattr(record, name, None) is not None
        )
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line)


def apply_log_policy(*, debug: bool, json_lines: bool = False) -> None:
    """Hide the library's records, or show them all with `--debug`; with
    `json_lines`, write WARNING and up (everything with `debug`) as JSON."""
    logger = logging.getLogger(LIBRARY_LOGGER)
    for old in [h for h in logger.handlers if h.get_name() == _HANDLER]:
        logger.removeHandler(old)
    handler: logging.Handler
    if json_lines:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonLines())
        logger.setLevel(logging.DEBUG if debug else logging.WARNING)
    elif debug:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(_FORMAT))
        logger.setLevel(logging.DEBUG)
    else:
        # Without any handler, Python would print WARNING and above raw (its
        # last-resort handler); this one drops them.
        handler = logging.NullHandler()
    handler.set_name(_HANDLER)
    logger.addHandler(handler)
