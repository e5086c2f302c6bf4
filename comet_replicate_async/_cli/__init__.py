"""The `comet-replicate` command line (the `cli` extra): every module here is CLI-only.

`_commands` holds the click commands, `_batch_run` what a `batch` prints and
exits with, `_batch_folder` a `batch` run into its output folder (downloads,
`results.jsonl`, gallery) with `_batch_report` what it reports and
`_folder_journal` its journal, `_prompts` the prompt files, `_progress` the
progress display and `_gallery` the HTML sheet; `_errors` turns a failure into
one `error:` line and an exit code, `_signals` stops a batch on SIGINT, SIGTERM
or SIGHUP, and `_doctor` checks a setup.
"""

from ._commands import main

__all__ = ["main"]
