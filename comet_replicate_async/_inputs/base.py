"""The base of the typed FLUX inputs: field checks that report every problem at once.

A typed input sends only what the user set, so the server's own defaults apply to
the rest. Each field carries a `Check` in its metadata; `FluxInput` runs them all
on construction and raises one `InputValidationError` listing every problem.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal, Self, cast

import attrs

from comet_replicate_async._exceptions import InputValidationError
from comet_replicate_async._sansio import validate_model_id

from .images import image_to_url

__all__ = [
    "BatchModel",
    "Check",
    "FluxInput",
    "ModelCall",
    "OutputShape",
    "choice",
    "image",
    "integer",
    "item_model",
    "number",
    "resolve_item",
    "switch",
]

OutputShape = Literal["list", "single"]
CheckKind = Literal["integer", "number", "switch", "choice", "image"]


@attrs.frozen
class Check:
    """What one field accepts."""

    kind: CheckKind
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    multiple_of: int | None = None

    def describe(self) -> str:
        """What is allowed, in words (used in errors and in the docs table)."""
        if self.kind == "choice":
            return "one of " + ", ".join(repr(choice) for choice in self.choices)
        if self.kind == "switch":
            return "true or false"
        if self.kind == "image":
            return "an http(s) URL, a local path or bytes (JPEG, PNG, GIF, WebP)"
        noun = "an integer" if self.kind == "integer" else "a number"
        if self.low is None or self.high is None:
            return noun
        text = f"{noun} from {_plain(self.low)} to {_plain(self.high)}"
        if self.multiple_of:
            text += f", a multiple of {self.multiple_of}"
        return text

    def problem(self, value: Any) -> str | None:
        """None when `value` is allowed, else what is wrong (images are checked apart)."""
        if self.kind == "switch":
            return None if isinstance(value, bool) else self.describe()
        if self.kind == "choice":
            return None if value in self.choices else self.describe()
        if self.kind == "image":
            return None
        wanted: tuple[type, ...] = (int,) if self.kind == "integer" else (int, float)
        if isinstance(value, bool) or not isinstance(value, wanted):
            return self.describe()
        amount = cast(float, value)
        out_of_range = (self.low is not None and amount < self.low) or (
            self.high is not None and amount > self.high
        )
        if out_of_range or (self.multiple_of and amount % self.multiple_of):
            return self.describe()
        return None


def _plain(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:45] + "…" + text[-10:]


def _field(check: Check, doc: str) -> Any:
    return attrs.field(
        default=None,
        kw_only=True,
        metadata={"check": check, "doc": doc},
        repr=_short_repr if check.kind == "image" else True,
    )


def integer(doc: str, low: float | None = None, high: float | None = None) -> Any:
    """An optional integer field, within `low` to `high` when they are given."""
    return _field(Check("integer", low, high), doc)


def number(doc: str, low: float, high: float) -> Any:
    """An optional number field within `low` to `high`."""
    return _field(Check("number", low, high), doc)


def switch(doc: str) -> Any:
    """An optional true/false field."""
    return _field(Check("switch"), doc)


def choice(doc: str, *choices: str) -> Any:
    """An optional field taking one of `choices`."""
    return _field(Check("choice", choices=choices), doc)


def image(doc: str) -> Any:
    """An optional image field: a URL, a local path or bytes."""
    return _field(Check("image"), doc)


def dimension(doc: str) -> Any:
    """An optional width or height: 256 to 1440, a multiple of 32."""
    return _field(Check("integer", 256, 1440, multiple_of=32), doc)


@attrs.frozen
class FluxInput:
    """Base of the typed inputs; each subclass is one model.

    Args:
        prompt: what to generate (or, for Kontext, how to edit the input image).
        extra: parameters this class does not know (e.g. a newer model version's),
            sent as given.

    Raises:
        InputValidationError: on construction, listing every bad field with the
            value given and what is allowed.
    """

    model: ClassVar[str]
    output_shape: ClassVar[OutputShape]

    prompt: str
    extra: Mapping[str, Any] = attrs.field(factory=dict, kw_only=True)

    def __attrs_post_init__(self) -> None:
        problems = self._field_problems() + self._cross_field_problems()
        if problems:
            raise InputValidationError(
                [f"{type(self).__name__}: {problem}" for problem in problems]
            )

    def _field_problems(self) -> list[str]:
        problems: list[str] = []
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            problems.append(f"prompt={self.prompt!r}: must be a non-empty string")
        if not isinstance(self.extra, Mapping):
            problems.append(f"extra={self.extra!r}: must be a mapping")
        else:
            known = {field.name for field in attrs.fields(type(self))}
            problems += [
                f"extra[{key!r}]: {key!r} is a field of its own; set it directly"
                for key in self.extra
                if key in known
            ]
        for field in attrs.fields(type(self)):
            check = field.metadata.get("check")
            value = getattr(self, field.name)
            if check is None or value is None:
                continue
            if check.kind == "image":
                try:
                    # Frozen: the one place the value is replaced, by its URL form.
                    object.__setattr__(self, field.name, image_to_url(value))
                except (ValueError, TypeError, OSError) as error:
                    problems.append(f"{field.name}: {error}")
                continue
            wrong = check.problem(value)
            if wrong is not None:
                problems.append(f"{field.name}={value!r}: must be {wrong}")
        return problems

    def _cross_field_problems(self) -> list[str]:
        """Rules that involve more than one field; subclasses add theirs."""
        return []

    def to_input(self) -> dict[str, Any]:
        """The `input` object to send: only the fields that were set, plus `extra`."""
        body = {
            field.name: getattr(self, field.name)
            for field in attrs.fields(type(self))
            if field.name != "extra" and getattr(self, field.name) is not None
        }
        body.update(self.extra)
        return body

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Self:
        """Build from a plain `input` dict: known keys become fields, others `extra`."""
        if not isinstance(data, Mapping):
            raise InputValidationError(
                f"{cls.__name__}: input must be a mapping, got {type(data).__name__}"
            )
        known = {field.name for field in attrs.fields(cls)} - {"extra"}
        fields = {key: value for key, value in data.items() if key in known}
        extra = {key: value for key, value in data.items() if key not in known}
        if "prompt" not in fields:
            raise InputValidationError(f"{cls.__name__}: prompt is required")
        return cls(**fields, extra=extra)


ModelArg = str | FluxInput | type[FluxInput]
InputArg = Mapping[str, Any] | FluxInput | None


def resolve_call(model: ModelArg, input: InputArg) -> tuple[str, dict[str, Any]]:
    """The model id and `input` object a call stands for, validated before any request.

    Accepts `("owner/name", {...})`, `("owner/name", FluxX(...))`, a typed input
    alone (`FluxX(...)`), or a typed input class with a dict or an instance.
    """
    if isinstance(model, FluxInput):
        if input is not None:
            raise InputValidationError(
                "pass a typed input alone, or a model and an input, not both"
            )
        return model.model, model.to_input()
    if isinstance(model, type) and issubclass(model, FluxInput):
        if isinstance(input, model):
            return model.model, input.to_input()
        if isinstance(input, FluxInput):
            raise InputValidationError(
                f"a {type(input).__name__} input cannot run as {model.__name__}"
            )
        if input is None:
            raise InputValidationError(f"{model.__name__}: an input is required")
        return model.model, model.from_mapping(input).to_input()
    if not isinstance(model, str):
        raise InputValidationError(
            "model must be 'owner/name' or a typed input such as FluxSchnell(...), "
            f"got {type(model).__name__}"
        )
    validate_model_id(model)
    if isinstance(input, FluxInput):
        if input.model != model:
            raise InputValidationError(
                f"a {type(input).__name__} input is for {input.model}, not {model}"
            )
        return model, input.to_input()
    if not isinstance(input, Mapping):
        raise InputValidationError(
            f"input must be a mapping of parameters, got {type(input).__name__}"
        )
    return model, dict(input)


#: A batch's model: one for every input, or None when each input is typed and
#: names its own.
BatchModel = str | type[FluxInput] | None


@attrs.frozen
class ModelCall:
    """A dict input bound to its model: how the command line, whose prompt
    files may name any `"owner/name"` per line, feeds a batch without a model."""

    model: str
    input: Mapping[str, Any]


def resolve_item(model: BatchModel, input: Any) -> tuple[str, dict[str, Any]]:
    """`resolve_call` for one input of a batch; with no batch model, the input
    must be typed (it names its model): a dict raises `InputValidationError`."""
    if model is not None:
        return resolve_call(model, input)
    if isinstance(input, ModelCall):
        return resolve_call(input.model, input.input)
    if not isinstance(input, FluxInput):
        raise InputValidationError(
            "a batch without a model takes typed inputs, each naming its model "
            f"(FluxSchnell(...), FluxDev(...)), got {type(input).__name__}; "
            "give the model for dict inputs: as_completed(model, inputs)"
        )
    return resolve_call(input, None)


def item_model(model: BatchModel, input: Any) -> str:
    """The `"owner/name"` a batch input runs on, or "" when it names none."""
    if isinstance(model, str):
        return model
    if model is not None:
        return model.model
    return input.model if isinstance(input, FluxInput | ModelCall) else ""
