from __future__ import annotations

import comet_replicate_async


def test_all_lists_every_public_name_sorted() -> None:
    public = {
        name
        for name in dir(comet_replicate_async)
        # Assertion rewriting may add "@py_builtins": not identifiers, not ours.
        if name.isidentifier()
        and not name.startswith("_")
        and name not in {"annotations", "Any", "attrs", "testing"}
    }

    assert set(comet_replicate_async.__all__) == public
    assert comet_replicate_async.__all__ == sorted(comet_replicate_async.__all__)


def test_public_names_report_the_package_as_their_module() -> None:
    for name in comet_replicate_async.__all__:
        assert (
            getattr(comet_replicate_async, name).__module__ == "comet_replicate_async"
        )
