"""The one cattrs converter, configured here and nowhere else.

It is tolerant on purpose: the API is a gateway in front of another API, and its
replies drift. Unknown fields are ignored, unknown statuses become non-terminal
pseudo-members, timestamps with `Z` and 3 to 9 fractional digits parse, and a
`null` where a string or mapping is expected reads as empty.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import cattrs
from cattrs.gen import make_dict_structure_fn, override

from ._models import Metrics, Prediction, Status

__all__ = ["CONVERTER", "make_converter", "structure_prediction"]

logger = logging.getLogger("comet_replicate_async")

# The API sends up to 9 fractional digits; some parsers take at most 6.
_EXTRA_FRACTION = re.compile(r"(\.\d{6})\d+")
_seen_unknown_statuses: set[str] = set()


def _structure_datetime(value: Any, _: type) -> datetime | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"timestamp must be a string, got {type(value).__name__}")
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        # Older Pythons stop at 6 fractional digits; trim and try once more.
        return datetime.fromisoformat(_EXTRA_FRACTION.sub(r"\1", value))


def _structure_status(value: Any, _: type) -> Status:
    status = Status(str(value))
    if not status.known and status.value not in _seen_unknown_statuses:
        # Logged once per value: the poller sees it on every query otherwise.
        _seen_unknown_statuses.add(status.value)
        logger.warning("unknown prediction status %r, treated as not finished", value)
    return status


def _structure_optional_text(value: Any, _: type) -> str | None:
    if value is None or isinstance(value, str):
        return value
    # An error may arrive as an object; keep its content rather than fail.
    return json.dumps(value, sort_keys=True)


def _structure_mapping(value: Any, _: type) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"expected an object, got {type(value).__name__}")
    # Every reply brings its own copy of the same few keys; thousands of
    # predictions in flight share one of each instead.
    return {_shared(key): item for key, item in value.items()}


def _shared(text: Any) -> Any:
    return sys.intern(text) if type(text) is str else text


def _structure_shared_text(value: Any, _: type) -> str:
    # For fields with few distinct values (model, source): one copy of each.
    return sys.intern(value) if type(value) is str else str(value)


def _structure_shared_optional_text(value: Any, _: type) -> str | None:
    return None if value is None else _structure_shared_text(value, str)


def _structure_metrics(value: Any, _: type) -> Metrics | None:
    if not isinstance(value, Mapping):
        return None
    predict_time = value.get("predict_time")
    total_time = value.get("total_time")
    image_count = value.get("image_count")
    return Metrics(
        predict_time=float(predict_time)
        if isinstance(predict_time, int | float)
        else None,
        total_time=float(total_time) if isinstance(total_time, int | float) else None,
        image_count=image_count if isinstance(image_count, int) else None,
    )


def make_converter() -> cattrs.Converter:
    """A converter configured for this package's values."""
    converter = cattrs.Converter(forbid_extra_keys=False)
    converter.register_structure_hook(datetime, _structure_datetime)
    converter.register_structure_hook(Status, _structure_status)
    converter.register_structure_hook(str | None, _structure_optional_text)
    converter.register_structure_hook_func(
        lambda type_: type_ in (Mapping[str, Any], Mapping[str, str]),
        _structure_mapping,
    )
    converter.register_structure_hook(Metrics | None, _structure_metrics)
    converter.register_structure_hook(Any, lambda value, _: value)
    converter.register_structure_hook(
        bool, lambda value, _: bool(value) if value is not None else False
    )
    converter.register_structure_hook(
        Prediction,
        make_dict_structure_fn(
            Prediction,
            converter,
            model=override(struct_hook=_structure_shared_text),
            version=override(struct_hook=_structure_shared_optional_text),
            source=override(struct_hook=_structure_shared_optional_text),
        ),
    )
    return converter


CONVERTER = make_converter()


def structure_prediction(data: Mapping[str, Any]) -> Prediction:
    """Build a `Prediction` from a decoded JSON object.

    Raises:
        cattrs.BaseValidationError: when a required field is missing or unreadable.
    """
    return CONVERTER.structure(data, Prediction)
