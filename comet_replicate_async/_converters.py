"""The one cattrs converter, configured here and nowhere else.

It is tolerant on purpose: the API is a gateway in front of another API, and its
replies drift. The rules (documented in "What the client accepts"):

- unknown fields are ignored, and `null` means absent for every optional field;
- a status matches case-insensitively after trimming; one this client does not
  know becomes a non-terminal pseudo-member, logged once;
- a boolean is a JSON boolean or the string `"true"` or `"false"`;
- a timestamp may end in `Z`, a numeric offset or no zone at all (read as UTC),
  with 0 to 9 fractional digits;
- an optional field that cannot be read (an odd timestamp, a wrong type) reads as
  absent, with one WARNING per field name: it never changes the status or drops
  the output.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import cattrs
from cattrs.gen import make_dict_structure_fn, override

from ._values import Metrics, Prediction, Status

__all__ = ["CONVERTER", "make_converter", "structure_prediction"]

logger = logging.getLogger("comet_replicate_async")

# The API sends up to 9 fractional digits; some parsers take at most 6.
_EXTRA_FRACTION = re.compile(r"(\.\d{6})\d+")
_BOOLEANS = MappingProxyType({"true": True, "false": False})


class _Unreadable(ValueError):
    """An optional field's value that is not what the field holds."""


def _structure_datetime(value: Any, _: type) -> datetime | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _Unreadable(f"a timestamp must be a string, got {type(value).__name__}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        # Older Pythons stop at 6 fractional digits; trim and try once more.
        try:
            moment = datetime.fromisoformat(_EXTRA_FRACTION.sub(r"\1", value.strip()))
        except ValueError:
            raise _Unreadable(f"not an ISO 8601 timestamp: {value[:40]!r}") from None
    # No zone: the API's clock is UTC. Mixing naive and aware times would make
    # every later subtraction fail.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _structure_status(value: Any, _: type) -> Status:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"a status must be a non-empty string, got {value!r}")
    # An unknown one is kept as it is (and logged once by the session reading it).
    return Status(value.strip().lower())


def _structure_bool(value: Any, _: type) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _BOOLEANS:
        return _BOOLEANS[value.strip().lower()]
    raise _Unreadable(f"not a boolean: {value!r}")


def _structure_optional_text(value: Any, _: type) -> str | None:
    if value is None or isinstance(value, str):
        return value
    # An error may arrive as an object; keep its content rather than fail.
    return json.dumps(value, sort_keys=True)


def _structure_mapping(value: Any, _: type) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _Unreadable(f"expected an object, got {type(value).__name__}")
    # Every reply brings its own copy of the same few keys; thousands of
    # predictions in flight share one of each instead.
    return {_shared(key): item for key, item in value.items()}


def _shared(text: Any) -> Any:
    return sys.intern(text) if type(text) is str else text


def _structure_shared_text(value: Any, _: type) -> str:
    # For fields with few distinct values (model, source): one copy of each.
    if value is None:
        return ""
    if type(value) is not str:
        raise _Unreadable(f"expected a string, got {type(value).__name__}")
    return sys.intern(value)


def _structure_shared_optional_text(value: Any, _: type) -> str | None:
    return None if value is None else _structure_shared_text(value, str)


def _structure_id(value: Any, _: type) -> str:
    # Required: `str(None)` would make a prediction called "None".
    if not isinstance(value, str) or not value:
        raise ValueError(f"the id must be a non-empty string, got {value!r}")
    return value


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


class _WarnOnce:
    """Names of the fields already warned about, per converter."""

    def __init__(self) -> None:
        self._fields: set[str] = set()

    def tolerant(
        self, name: str, hook: Callable[[Any, type], Any], default: Any
    ) -> Callable[[Any, type], Any]:
        """`hook`, reading an unreadable value as `default` (the field's absent)."""

        def structure(value: Any, type_: type) -> Any:
            try:
                return hook(value, type_)
            except _Unreadable as exc:
                if name not in self._fields:
                    self._fields.add(name)
                    logger.warning("ignoring the reply's %s: %s", name, exc)
                return default() if callable(default) else default

        return structure


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
    converter.register_structure_hook(bool, _structure_bool)
    warn = _WarnOnce()
    # Every optional field whose value may be unreadable: read as absent instead.
    tolerant = {
        "model": (_structure_shared_text, ""),
        "version": (_structure_shared_optional_text, None),
        "source": (_structure_shared_optional_text, None),
        "input": (_structure_mapping, dict),
        "urls": (_structure_mapping, dict),
        "data_removed": (_structure_bool, False),
        "created_at": (_structure_datetime, None),
        "started_at": (_structure_datetime, None),
        "completed_at": (_structure_datetime, None),
    }
    overrides: dict[str, Any] = {
        name: override(struct_hook=warn.tolerant(name, hook, default))
        for name, (hook, default) in tolerant.items()
    }
    overrides["id"] = override(struct_hook=_structure_id)
    converter.register_structure_hook(
        Prediction, make_dict_structure_fn(Prediction, converter, **overrides)
    )
    return converter


CONVERTER = make_converter()


def structure_prediction(
    data: Mapping[str, Any], converter: cattrs.Converter = CONVERTER
) -> Prediction:
    """Build a `Prediction` from a decoded JSON object.

    Raises:
        cattrs.BaseValidationError: when `id` or `status` is missing or unreadable.
    """
    return converter.structure(data, Prediction)
