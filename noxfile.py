"""Task runner. `nox` runs tests (the whole suite on Python 3.11, smoke tests on
every newer Python of the classifiers that is installed, pyenv's too), coverage,
lint, typing and docs; `nox -s bench` on demand."""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess

import nox

nox.options.sessions = ["tests", "coverage", "lint", "lint-imports", "typing", "docs"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_external_run = True
# A Python of the classifiers that is not installed is skipped, on CI too (where
# nox would fail on it by default): a machine with only 3.11 still passes. With
# none installed no test runs, and `coverage` fails for want of data.
nox.options.error_on_missing_interpreters = False
nox.needs_version = ">=2025.5.1"

PYPROJECT = nox.project.load_toml("pyproject.toml")
PYTHONS = nox.project.python_versions(PYPROJECT)
HERE = pathlib.Path(__file__).parent


def _pyenv_pythons_on_path() -> None:
    """Put the installed pyenv Pythons of the classifiers first on PATH.

    pyenv's shims run only the versions selected (`pyenv global`, `PYENV_VERSION`,
    `.python-version`): `python3.12` fails when 3.12 is installed but not selected,
    and nox would skip it. The newest patch release of each version is used.
    """
    pyenv = shutil.which("pyenv")
    if pyenv is None:
        return
    found = subprocess.run([pyenv, "root"], capture_output=True, text=True)
    installed = pathlib.Path(found.stdout.strip(), "versions")
    if found.returncode != 0 or not installed.is_dir():
        return
    bins = []
    for python in PYTHONS:
        pattern = re.compile(rf"{re.escape(python)}\.(\d+)")
        patches = [
            (int(match[1]), path / "bin")
            for path in installed.iterdir()
            if (match := pattern.fullmatch(path.name))
            and (path / "bin" / f"python{python}").exists()
        ]
        if patches:
            bins.append(str(max(patches)[1]))
    os.environ["PATH"] = os.pathsep.join([*bins, os.environ.get("PATH", "")])


_pyenv_pythons_on_path()


def _install(session: nox.Session, *groups: str, extras: str = "") -> None:
    dependencies = [
        requirement
        for group in groups
        for requirement in nox.project.dependency_groups(PYPROJECT, group)
    ]
    # Not editable: tests run against the installed package, as users get it.
    session.install(f".{extras}", *dependencies)


# The whole suite runs on the oldest Python of the classifiers; the newer ones run
# these smoke tests: what moves between Python releases (asyncio cancellation, the
# values and their converter, typed inputs, the sans-I/O core), the retry loop, the
# limits, the poller and the batch engine on MockTransport and a fake clock. Three
# whole runs would take CI on 2 cores well past 8 minutes; these add about a
# minute per Python. Arguments (`nox -s tests -- ...`) replace them.
SMOKE_TESTS = [
    "tests/batch/test_feed.py",
    "tests/test_calls.py",
    "tests/test_cancellation.py",
    "tests/test_handoff.py",
    "tests/test_config.py",
    "tests/test_exported_members.py",
    "tests/test_limits.py",
    "tests/transports/test_mock.py",
    "tests/polling/test_poller.py",
    "tests/polling/test_registry.py",
    "tests/test_retry.py",
    "tests/test_sansio.py",
    "tests/polling/test_schedule.py",
    "tests/inputs/test_flux.py",
    "tests/test_values.py",
]


# The whole suite spends most of its time waiting (on the fake's latencies, on
# subprocesses and servers), not computing: four pytest-xdist workers on 2 cores
# take it from about 9 minutes to 3 or 4. Each test is isolated already (its own
# fake server on a free port, its own database, its own folders).
WHOLE_SUITE = ["--numprocesses", "4"]


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The test suite, warnings as errors, measured by coverage (the smoke tests
    only on the newer Pythons)."""
    _install(session, "tests", extras="[cli,postgresql,otel]")
    whole = session.python == PYTHONS[0]
    arguments = session.posargs or (WHOLE_SUITE if whole else SMOKE_TESTS)
    session.run("coverage", "run", "-m", "pytest", *arguments)
    session.notify("coverage")


@nox.session
def coverage(session: nox.Session) -> None:
    """Branch coverage of the package over every `tests` run; fails under 90%."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "coverage"))
    session.run("coverage", "combine")
    session.run("coverage", "report")


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(name="lint-imports")
def lint_imports(session: nox.Session) -> None:
    """import-linter: the package's layers, its cycles and who imports aiohttp
    (the contracts are in pyproject.toml)."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "lint"))
    session.run("lint-imports")


@nox.session
def typing(session: nox.Session) -> None:
    """mypy --strict on the package, tests/typing and the docs' example apps;
    pyright (strict) on tests/typing, the public API as a second checker sees it."""
    _install(session, "typing", extras="[cli,postgresql,otel]")
    session.run("mypy", "--strict", "comet_replicate_async", "tests/typing")
    session.run("pyright", "tests/typing")
    # The examples import each other as top-level modules: check them from there.
    examples = sorted(path.name for path in (HERE / "docs" / "examples").glob("*.py"))
    with session.chdir(HERE / "docs" / "examples"):
        session.run("mypy", "--strict", *examples)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks against the fake server; writes docs/benchmarks.md and its chart.

    Arguments go to benchmarks/run.py, e.g. `nox -s bench -- --scale-factor 0.05`.
    """
    _install(session, "bench")
    session.run("python", "benchmarks/run.py", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site, built into site/; any warning fails the build."""
    _install(session, "docs")
    session.run("mkdocs", "build", "--strict", *session.posargs)
