"""Task runner. `nox` runs tests (on every Python of the classifiers that is
installed), coverage, lint, typing and docs; `nox -s bench` on demand."""

from __future__ import annotations

import pathlib

import nox

nox.options.sessions = ["tests", "coverage", "lint", "typing", "docs"]
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


def _install(session: nox.Session, *groups: str, extras: str = "") -> None:
    dependencies = [
        requirement
        for group in groups
        for requirement in nox.project.dependency_groups(PYPROJECT, group)
    ]
    # Not editable: tests run against the installed package, as users get it.
    session.install(f".{extras}", *dependencies)


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The test suite, warnings as errors, measured by coverage."""
    _install(session, "tests", extras="[cli,postgresql]")
    session.run("coverage", "run", "-m", "pytest", *session.posargs)
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


@nox.session
def typing(session: nox.Session) -> None:
    """mypy --strict on the package, tests/typing and the docs' example apps;
    pyright (strict) on tests/typing, the public API as a second checker sees it."""
    _install(session, "typing", extras="[cli,postgresql]")
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
