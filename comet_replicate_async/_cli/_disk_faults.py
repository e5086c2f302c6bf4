"""A full disk or a refused permission in the middle of a batch.

The first time the folder refuses a file (an image, the manifest, the gallery or
the journal), the batch stops creating: no more money goes on results it cannot
save. Predictions already created run on and are recorded (their ids are in the
journal), so a rerun once the cause is fixed polls them and downloads what is
missing. The run then ends with one `error:` line naming the path.
"""

from __future__ import annotations

from pathlib import Path

import attrs

from comet_replicate_async._exceptions import CometReplicateError, JournalError

from ._errors import EXIT_FATAL, CliError

__all__ = ["DiskFault", "journal_refused"]


def journal_refused(error: BaseException | None) -> JournalError | None:
    """The journal's refused write behind `error`, if that is what it is."""
    reason = getattr(error, "reason", None)  # BatchStoppedError: why it stopped
    for candidate in (error, reason):
        if isinstance(candidate, JournalError) and candidate.while_writing:
            return candidate
    return None


@attrs.define
class DiskFault:
    """The first file the folder refused during a run, if any."""

    error: CliError | None = None

    def record(self, failure: OSError | JournalError, where: Path) -> bool:
        """Keep the first fault; True the first time (the batch stops creating)."""
        if self.error is not None:
            return False
        if isinstance(failure, JournalError):
            # Its message names the file and says that a rerun resumes.
            self.error = CliError(str(failure), code=EXIT_FATAL)
            return True
        path = failure.filename or where
        self.error = CliError(
            f"cannot save {path} ({failure.strerror or failure}); the batch "
            "stopped creating and the predictions it made are in the journal: "
            "free some space or fix the permissions, then rerun the same command "
            "to resume (it downloads what is missing)",
            code=EXIT_FATAL,
        )
        return True

    def reason(self) -> CometReplicateError:
        """Why the batch stopped creating, for the items never sent."""
        assert self.error is not None
        return CometReplicateError(str(self.error))
