"""`python -m comet_replicate_async` and the `comet-replicate` command."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line, or say how to install it."""
    try:
        from ._cli import main as cli_main
    except ImportError as error:  # click or rich missing: the `cli` extra
        print(
            f"The command line needs the 'cli' extra ({error.name} is missing):\n"
            "  pip install 'comet-replicate-async[cli]'",
            file=sys.stderr,
        )
        return 2
    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
