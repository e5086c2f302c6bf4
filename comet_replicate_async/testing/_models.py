"""The models the fake serves, and CometAPI's refusal of any other.

CometAPI answers a create for a model it has no channel for with HTTP 503 and
the code `model_not_found` (nothing is created). The fake does the same, so a
test with a misspelt model fails against it as it would against the real API.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import attrs

from comet_replicate_async._inputs.flux import FLUX_INPUTS

from ._replies import Reply, comet_error

__all__ = ["FLUX_MODELS", "ServedModels"]

#: The seven FLUX models, served by default.
FLUX_MODELS: Final = frozenset(cls.model for cls in FLUX_INPUTS)


def _model_ids(models: Iterable[str]) -> frozenset[str]:
    # A lone string is a common slip for a list of one, and would be read as
    # its characters.
    if isinstance(models, str):
        msg = f"models must be a list of 'owner/name' ids, got the string {models!r}"
        raise TypeError(msg)
    ids = frozenset(models)
    for model in ids:
        owner, slash, name = str(model).partition("/")
        if not (isinstance(model, str) and slash and owner and name):
            msg = f"a model id is 'owner/name', got {model!r}"
            raise ValueError(msg)
    return ids


@attrs.define
class ServedModels:
    """The model ids a fake serves; it grows when a test adds one."""

    _ids: set[str]

    @classmethod
    def of(cls, extra: Iterable[str]) -> ServedModels:
        """The FLUX models and *extra*."""
        return cls({*FLUX_MODELS, *_model_ids(extra)})

    @property
    def ids(self) -> frozenset[str]:
        return frozenset(self._ids)

    def add(self, models: Iterable[str]) -> None:
        self._ids.update(_model_ids(models))

    def refusal(self, model: str, request_id: str) -> Reply | None:
        """CometAPI's 503 for a model it does not serve, or None to go on."""
        if model in self._ids:
            return None
        return comet_error(
            503,
            f"no available channel for group default and model {model} (distributor)",
            request_id,
            code="model_not_found",
        )
