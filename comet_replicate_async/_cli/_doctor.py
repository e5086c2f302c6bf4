"""Checks that the command line can reach and use the API, without creating anything.

`doctor` runs them all and prints one line each; `batch` runs the reachability
check first, so an unreachable API is one line, not one failure per prompt.
"""

from __future__ import annotations

import platform
from importlib import metadata

import anyio
import attrs

from comet_replicate_async._config import resolve_base_url
from comet_replicate_async._exceptions import (
    APIConnectionError,
    AuthenticationError,
    CometReplicateError,
    NotFoundError,
    PermissionDeniedError,
)
from comet_replicate_async._money.prices import build_catalogue_request, read_catalogue
from comet_replicate_async._retry import RetryPolicy
from comet_replicate_async._session import Session

from ._errors import EXIT_FATAL, CliError

__all__ = ["Check", "check_reachable", "doctor_report", "render", "run_checks"]

#: No prediction has this id: a query of it answers 404 to a good key.
UNKNOWN_ID = "doctorcheck0000000000000000"
#: A second try is enough to tell a blip from an unreachable host.
_PROBE_RETRY = RetryPolicy(max_attempts=2, initial_backoff=0.2)
_PACKAGES = (
    "comet-replicate-async",
    "aiohttp",
    "anyio",
    "attrs",
    "cattrs",
    "click",
    "rich",
)


@attrs.frozen
class Check:
    """One line of the doctor's report; a warning (`warn`) does not fail it."""

    name: str
    ok: bool
    detail: str
    warn: bool = False


async def check_reachable(api_key: str, base_url: str | None) -> None:
    """Raise a `CliError` (exit 3) when the API does not answer; any answer will do."""
    async with Session(api_key, base_url=base_url, retry=_PROBE_RETRY) as session:
        try:
            await session.get(UNKNOWN_ID)
        except APIConnectionError as error:
            raise CliError(
                f"cannot reach the API at {session.base_url} ({error}); check "
                "--base-url or COMETAPI_BASE_URL and the network; nothing was sent",
                code=EXIT_FATAL,
            ) from None
        except CometReplicateError:
            pass  # it answered


async def run_checks(api_key: str | None, base_url: str | None) -> list[Check]:
    """Every check, in order; those that need an answer are skipped without one."""
    url = resolve_base_url(base_url)
    checks = [
        Check("API key", True, "set (not shown)")
        if api_key
        else Check("API key", False, "none: pass --api-key or set COMETAPI_KEY")
    ]
    if api_key:
        async with Session(api_key, base_url=base_url, retry=_PROBE_RETRY) as session:
            checks += await _remote_checks(session, url)
    else:
        checks.append(Check("API", False, f"{url}: not checked without a key"))
    checks.append(Check("versions", True, _versions()))
    return checks


async def _remote_checks(session: Session, url: str) -> list[Check]:
    try:
        await session.get(UNKNOWN_ID)
    except NotFoundError:
        key = Check("key accepted", True, "a query of an unknown id answered 404")
    except (AuthenticationError, PermissionDeniedError) as error:
        key = Check("key accepted", False, f"refused ({error}): check the key")
    except APIConnectionError as error:
        return [
            Check("API answers", False, f"{url}: {error}"),
            Check("key accepted", False, "not checked: the API does not answer"),
            Check("price catalogue", False, "not checked: the API does not answer"),
        ]
    except CometReplicateError as error:
        key = Check("key accepted", False, f"unexpected answer: {error}")
    else:
        key = Check("key accepted", False, "a query of an unknown id found one")
    answers = Check("API answers", True, url)
    try:
        reply = await session._parts.transport.send(build_catalogue_request())
        prices = read_catalogue(reply)
    except CometReplicateError as error:
        # Not a failure: the bundled estimates stand in for the catalogue.
        catalogue = Check(
            "price catalogue",
            True,
            f"cannot be read ({error}); the bundled estimates stand in",
            warn=True,
        )
    else:
        catalogue = Check("price catalogue", True, f"{len(prices)} model prices")
    return [answers, key, catalogue]


def _versions() -> str:
    found = [f"Python {platform.python_version()}"]
    for package in _PACKAGES:
        try:
            found.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            found.append(f"{package} missing")
    return ", ".join(found)


def doctor_report(api_key: str | None, base_url: str | None) -> tuple[list[str], bool]:
    """The report's lines, and whether every check passed."""
    return render(anyio.run(run_checks, api_key, base_url))


def render(checks: list[Check]) -> tuple[list[str], bool]:
    """One line per check (`ok`, `warn` or `FAIL`), and whether none failed."""
    lines = [f"{_mark(check)} {check.name}: {check.detail}" for check in checks]
    return lines, all(check.ok for check in checks)


def _mark(check: Check) -> str:
    if not check.ok:
        return "FAIL"
    return "warn" if check.warn else "ok  "
