from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import cattrs
import pytest

from comet_replicate_async import Metrics, Prediction, Status
from comet_replicate_async._converters import make_converter, structure_prediction

CREATE_REPLY: dict[str, Any] = {
    "id": "q4chw5rey9rmt0cww76t4h3ma4",
    "model": "black-forest-labs/flux-schnell",
    "version": "hidden",
    "input": {"aspect_ratio": "1:1", "prompt": "a paper boat"},
    "logs": "",
    "output": None,
    "data_removed": False,
    "error": None,
    "source": "api",
    "status": "starting",
    "created_at": "2026-03-12T11:27:18.258Z",
    "urls": {
        "cancel": "https://api.replicate.com/v1/predictions/q4chw5rey9rmt0cww76t4h3ma4/cancel",
        "get": "https://api.replicate.com/v1/predictions/q4chw5rey9rmt0cww76t4h3ma4",
        "web": "https://replicate.com/p/q4chw5rey9rmt0cww76t4h3ma4",
    },
}


def test_create_reply_from_the_docs_reads_whole() -> None:
    pred = structure_prediction(CREATE_REPLY)

    assert pred.id == "q4chw5rey9rmt0cww76t4h3ma4"
    assert pred.status is Status.STARTING
    assert not pred.done
    assert pred.input["prompt"] == "a paper boat"
    assert pred.created_at == datetime(2026, 3, 12, 11, 27, 18, 258000, tzinfo=UTC)
    assert pred.urls["web"].startswith("https://replicate.com/p/")
    assert pred.output_urls == ()


@pytest.mark.parametrize(
    ("stamp", "microsecond"),
    [
        ("2025-02-26T15:02:03.355Z", 355000),
        ("2025-02-26T15:02:03.355487Z", 355487),
        ("2025-02-26T15:02:03.35548709Z", 355487),
        ("2025-02-26T15:02:03.355487099Z", 355487),
        ("2025-02-26T15:02:03.355487+00:00", 355487),
    ],
)
def test_timestamps_with_3_to_9_fraction_digits_parse(
    stamp: str, microsecond: int
) -> None:
    pred = structure_prediction({"id": "a", "status": "succeeded", "started_at": stamp})

    assert pred.started_at is not None
    assert pred.started_at.microsecond == microsecond
    assert pred.started_at.utcoffset() is not None


@pytest.mark.parametrize(
    ("output", "urls"),
    [
        ("https://x/a.webp", ("https://x/a.webp",)),
        (
            ["https://x/a.webp", "https://x/b.webp"],
            ("https://x/a.webp", "https://x/b.webp"),
        ),
        (None, ()),
        ([], ()),
    ],
)
def test_output_urls_normalises_string_list_and_null(
    output: object, urls: tuple[str, ...]
) -> None:
    pred = structure_prediction({"id": "a", "status": "succeeded", "output": output})

    assert pred.output_urls == urls


def test_unknown_fields_are_ignored_and_metrics_read() -> None:
    pred = structure_prediction(
        {
            "id": "a",
            "status": "succeeded",
            "brand_new_field": {"x": 1},
            "metrics": {"predict_time": 3.2756, "image_count": 1, "gpu": "h100"},
        }
    )

    assert pred.metrics == Metrics(predict_time=3.2756, image_count=1)


def test_nulls_where_strings_or_objects_are_expected_read_as_empty() -> None:
    pred = structure_prediction(
        {
            "id": "a",
            "status": "failed",
            "input": None,
            "urls": None,
            "logs": None,
            "data_removed": None,
            "error": {"message": "nsfw"},
        }
    )

    assert pred.input == {}
    assert pred.urls == {}
    assert pred.data_removed is False
    assert pred.error == '{"message": "nsfw"}'


@pytest.mark.parametrize("status", ["succeeded", "failed", "canceled", "aborted"])
def test_terminal_statuses(status: str) -> None:
    assert Status(status).terminal


@pytest.mark.parametrize("status", ["starting", "processing"])
def test_running_statuses_are_not_terminal(status: str) -> None:
    assert not Status(status).terminal


def test_unknown_status_is_kept_and_not_terminal() -> None:
    first = structure_prediction({"id": "a", "status": "queued-for-gpu"})
    second = structure_prediction({"id": "b", "status": "queued-for-gpu"})

    assert first.status == "queued-for-gpu"
    assert not first.status.terminal
    assert not first.status.known
    assert second.status == first.status


def test_prediction_is_frozen() -> None:
    pred = Prediction(id="a", status=Status.STARTING)

    with pytest.raises(AttributeError):
        pred.id = "b"  # type: ignore[misc]


# The parsing rules of "What the client accepts", one test each.

OPTIONAL_ABSENT: dict[str, object] = {
    "model": "",
    "version": None,
    "input": {},
    "output": None,
    "error": None,
    "logs": None,
    "metrics": None,
    "created_at": None,
    "started_at": None,
    "completed_at": None,
    "urls": {},
    "data_removed": False,
    "source": None,
}


@pytest.mark.parametrize(("field", "absent"), OPTIONAL_ABSENT.items())
def test_null_means_absent_for_every_optional_field(field: str, absent: object) -> None:
    pred = structure_prediction({"id": "a", "status": "processing", field: None})

    assert getattr(pred, field) == absent
    assert getattr(pred, field) != "None"


@pytest.mark.parametrize("field", ["id", "status"])
def test_null_id_or_status_is_not_a_prediction(field: str) -> None:
    with pytest.raises(cattrs.BaseValidationError):
        structure_prediction({"id": "a", "status": "processing", field: None})


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("SUCCEEDED", Status.SUCCEEDED),
        (" Failed ", Status.FAILED),
        ("Processing\n", Status.PROCESSING),
        ("ABORTED", Status.ABORTED),
        ("canceled", Status.CANCELED),
    ],
)
def test_statuses_match_case_insensitively_after_trimming(
    text: str, status: Status
) -> None:
    pred = structure_prediction({"id": "a", "status": text})

    assert pred.status is status
    assert pred.done is status.terminal


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, True), (False, False), ("true", True), ("false", False), (" TRUE ", True)],
)
def test_booleans_are_json_booleans_or_true_false_strings(
    value: object, expected: bool
) -> None:
    pred = structure_prediction(
        {"id": "a", "status": "succeeded", "data_removed": value}
    )

    assert pred.data_removed is expected


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("2026-03-12T11:27:18Z", datetime(2026, 3, 12, 11, 27, 18, tzinfo=UTC)),
        ("2026-03-12T11:27:18.5Z", datetime(2026, 3, 12, 11, 27, 18, 500000, UTC)),
        (
            "2026-03-12T11:27:18.123456789Z",
            datetime(2026, 3, 12, 11, 27, 18, 123456, UTC),
        ),
        ("2026-03-12T12:27:18+01:00", datetime(2026, 3, 12, 11, 27, 18, tzinfo=UTC)),
        ("2026-03-12T03:27:18-0800", datetime(2026, 3, 12, 11, 27, 18, tzinfo=UTC)),
        ("2026-03-12T11:27:18", datetime(2026, 3, 12, 11, 27, 18, tzinfo=UTC)),
        ("2026-03-12 11:27:18.25", datetime(2026, 3, 12, 11, 27, 18, 250000, UTC)),
    ],
)
def test_timestamps_with_any_zone_or_none_read_as_aware(
    stamp: str, expected: datetime
) -> None:
    pred = structure_prediction({"id": "a", "status": "succeeded", "created_at": stamp})

    assert pred.created_at == expected
    assert pred.created_at is not None
    assert pred.created_at.utcoffset() is not None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("created_at", "84 seconds"),
        ("completed_at", 1741778838),
        ("data_removed", "yes"),
        ("input", "a paper boat"),
        ("model", 7),
    ],
)
def test_an_unreadable_optional_field_reads_as_absent_and_keeps_the_result(
    field: str, value: object, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="comet_replicate_async")
    converter = make_converter()  # its own record of the fields warned about
    reply = {"id": "a", "status": "succeeded", "output": ["https://x/a.png"]}

    first = structure_prediction({**reply, field: value}, converter)
    second = structure_prediction({**reply, field: value}, converter)

    assert getattr(first, field) == OPTIONAL_ABSENT[field]
    assert first.status is Status.SUCCEEDED
    assert first.output_urls == ("https://x/a.png",)
    assert second == first
    warnings = [r for r in caplog.records if field in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING


@pytest.mark.parametrize(
    ("output", "urls"),
    [
        ("https://x/a.png", ("https://x/a.png",)),
        ("data:image/png;base64,iVBO", ("data:image/png;base64,iVBO",)),
        (["http://x/a.png", "HTTPS://x/b.png"], ("http://x/a.png", "HTTPS://x/b.png")),
        ({"image": "https://x/a.png", "seed": 42}, ("https://x/a.png",)),
        (["The", " cat", " sat"], ()),  # a language model's tokens
        ("a paper boat", ()),
        (["https://x/a.png", None, 3, "ftp://x/b.png"], ("https://x/a.png",)),
        (42, ()),
    ],
)
def test_output_urls_are_only_http_and_data_urls(
    output: object, urls: tuple[str, ...]
) -> None:
    pred = structure_prediction({"id": "a", "status": "succeeded", "output": output})

    assert pred.output_urls == urls
