"""`Session`: the one object users hold, the public face of the parts it delegates to.

Its lifecycle is `Lifecycle`'s (`_lifecycle.py`), its creates `CreateCalls`'s
(`_handoff.py`), its runs and waits `Runner`'s (`_runner.py`), its requests the
call layer's (`_calls.py`) and its batches the batch engine's (`_batch/feed.py`),
which it hands the session's `BatchContext`, not the session.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Self, overload

from ._batch.context import BATCH_CREATES
from ._batch.feed import JournalArg, start_batch
from ._batch.inputs import BatchInputs, TypedInputs, batch_args
from ._batch.tracker import BatchIterator
from ._config import (
    DEFAULT_TIMEOUT,
    RequestTimeout,
    resolve_base_url,
    resolve_request_timeout,
)
from ._futures import PredictionFuture
from ._handoff import OnCreated
from ._inputs.base import FluxInput, InputArg, ModelArg, resolve_call
from ._parts import SessionParts
from ._polling.schedule import PollPolicy
from ._retry import RetryPolicy
from ._stats import EventHandler, SessionStats
from ._telemetry.base import MeterProvider, TracerProvider
from ._telemetry.switch import build_telemetry
from ._transports.aiohttp import ClientSession, session_transport
from ._transports.base import Transport
from ._values import BatchItem, Prediction

__all__ = ["Session"]


class Session:
    """A client for CometAPI's Replicate-format predictions.

    Open it with `async with Session() as session:`. The key comes from `api_key`
    or `COMETAPI_KEY`; the base URL from `base_url`, `COMETAPI_BASE_URL`, or
    `https://api.cometapi.com` (a trailing `/v1` is accepted and dropped).

    One background poller task, started with the session, polls every prediction
    that `run`, `wait`, `submit` and the batch calls are waiting for.

    Args:
        api_key: the CometAPI key. Never shown in a repr, a log line or an error.
        base_url: the API root.
        max_concurrency: predictions in flight at once (from create until they
            finish) through `run`, `submit` and the batch calls.
        creates_per_minute: pace creates evenly to at most this many a minute,
            shared by every caller of the session (None: no ceiling). Either
            way the session learns the create rate the server allows (from
            429s, `Retry-After`, throttle messages and `ratelimit-*` headers)
            and paces to it.
        adaptive_concurrency: halve the concurrency window while 429s keep coming
            and grow it back by one slot at a time when they stop; `stats`
            shows the current size.
        retry: how failed calls are retried; see `RetryPolicy`.
        poll: how the poller spaces its queries; see `PollPolicy`.
        timeout: the default per-prediction deadline in seconds: 2100 (35
            minutes), since Replicate ends a prediction after 30. None waits for
            ever.
        request_timeout: connect and read timeouts of each HTTP call: seconds for
            all of them alike, or a `RequestTimeout`.
        prefer_wait: send `Prefer: wait=N` (1 to 60) on creates and read for up to
            N seconds plus a margin; an unfinished reply falls back to polling.
        http_session: an `aiohttp.ClientSession` to borrow instead of owning one;
            it is never closed by the session.
        transport: send requests through this object instead of an aiohttp pool
            (any object with the `Transport` methods, such as
            `testing.MockTransport`). It adds the key itself, so `api_key` and
            `http_session` are not taken with it; the session closes it.
        on_event: called with an `Event` for creates, status changes, retries
            and 429s. Keep it quick: it runs on the event loop.
        download_concurrency: output files downloaded at once by `download`.
        max_cost: a cap on spending, in US dollars: each create reserves its
            price (per image it asks for) before it is sent, and one that would
            pass the cap raises `BudgetExceededError` with nothing sent. A batch
            with a journal also counts what earlier runs of that journal spent,
            so its cap is cumulative over reruns. `stats.spent` and
            `stats.reserved` show the money. See "Costs and budgets" in the docs.
        prices: `{"owner/name": usd}` per create (per image), winning over
            CometAPI's catalogue and the bundled estimates. The catalogue is
            read (and cached for a day) only when `max_cost` needs a price.
        server_deadline: send Replicate's `Cancel-After` header on creates that
            have a deadline (`run`, `submit`, batches), so the server stops a
            prediction nobody will wait for. Off by default: whether CometAPI
            forwards the header is unconfirmed.
        tracer_provider: OpenTelemetry's, to trace each prediction (the `otel`
            extra); None: the global one. See "Observability" in the docs.
        meter_provider: OpenTelemetry's, for the metrics; None: the global one.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        max_concurrency: int = 32,
        creates_per_minute: float | None = None,
        adaptive_concurrency: bool = False,
        retry: RetryPolicy | None = None,
        poll: PollPolicy | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        request_timeout: RequestTimeout | float | None = None,
        prefer_wait: int | None = None,
        http_session: ClientSession | None = None,
        transport: Transport | None = None,
        on_event: EventHandler | None = None,
        download_concurrency: int = 8,
        max_cost: float | None = None,
        prices: Mapping[str, float] | None = None,
        server_deadline: bool = False,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        if prefer_wait is not None and not 1 <= prefer_wait <= 60:
            raise ValueError(f"prefer_wait must be 1 to 60 seconds, got {prefer_wait}")
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        self.base_url = resolve_base_url(base_url)
        self.retry = retry or RetryPolicy()
        self.poll = poll or PollPolicy()
        self.timeout = timeout
        self.request_timeout = resolve_request_timeout(request_timeout)
        # Every open connection holds buffers (about 13 KiB) whether used or not:
        # enough for the polls and the batch creates at once, and no more.
        parts = SessionParts.build(
            session_transport(
                transport,
                self.base_url,
                api_key,
                self.request_timeout,
                http_session,
                self.poll.max_concurrent_queries + BATCH_CREATES,
            ),
            base_url=self.base_url,
            retry=self.retry,
            poll=self.poll,
            max_concurrency=max_concurrency,
            adaptive_concurrency=adaptive_concurrency,
            creates_per_minute=creates_per_minute,
            prefer_wait=prefer_wait,
            on_event=on_event,
            download_concurrency=download_concurrency,
            max_cost=max_cost,
            prices=prices,
            server_deadline=server_deadline,
            deadline=self._deadline,
            telemetry=build_telemetry(tracer_provider, meter_provider, self.base_url),
        )
        self._parts = parts
        self._life, self._runner = parts.life, parts.runner

    def __repr__(self) -> str:
        return f"<Session base_url={self.base_url!r} state={self._life.state.value}>"

    @property
    def stats(self) -> SessionStats:
        """A snapshot of the live counters."""
        return self._parts.stats()

    async def __aenter__(self) -> Self:
        await self._life.open(self._parts.poller.run)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._life.close(abandon=exc is not None)

    async def aclose(self, *, grace: float | None = None) -> None:
        """Wait for outstanding predictions, then stop the poller and close the pool.

        With `grace` (seconds), a shutdown for services: no create is sent from
        now on (calls waiting for a slot or their turn, batch inputs not started
        yet and futures not started end with `PredictionAbandoned`, "not
        started: the session is closing"); predictions already created are
        waited for up to `grace` seconds, then abandoned: their callers end with
        `PredictionAbandoned` carrying the id, and the ids are logged.

        Closing twice is harmless. Call it from the task that opened the session.
        """
        await self._life.close(abandon=False, grace=grace)

    async def create(
        self,
        model: ModelArg,
        input: InputArg = None,
        *,
        on_created: OnCreated | None = None,
        timeout: float | None = None,
    ) -> Prediction:
        """Start one prediction: a single create call, at most once.

        `model` is `"owner/name"` with a dict or typed `input`, or a typed input
        alone (`FluxSchnell(prompt=...)`); bad ones raise `InputValidationError`
        before any request. A 429 or a connection that failed before sending is
        retried; a failure after the request was sent raises `AmbiguousSubmitError`
        (unless the retry policy opts into `retry_ambiguous_creates`, which may pay
        twice).

        `timeout` (else the session's) bounds the create itself, not the
        prediction: a 429 that does not lift before it raises `RateLimitError`, a
        create held back by an outage `PredictionTimeout` (nothing was created).

        `on_created` (a function, or an async one) is called with the new
        prediction as soon as the create answers, and awaited before this call
        returns: even if the caller was cancelled meanwhile, so a journal it
        writes never misses a billed id. What it raises is logged, not raised.
        """
        self._life.check_usable()
        model_id, body = resolve_call(model, input)
        with self._life.job():  # a normal close waits for it, whichever task it runs in
            deadline = self._deadline(timeout)
            create = self._parts.creates.create
            return await create(model_id, body, on_created, deadline, None, None, False)

    async def get(self, prediction_id: str) -> Prediction:
        """Read one prediction's current state: a single query call, with retries."""
        self._life.check_usable()
        return await self._parts.calls.get(prediction_id)

    async def wait(
        self, prediction: Prediction | str, *, timeout: float | None = None
    ) -> Prediction:
        """Wait for a prediction to finish, through the shared poller.

        Returns the succeeded prediction; raises `PredictionFailed`,
        `PredictionCanceled`, `PredictionTimeout` (the local deadline passed; the
        remote prediction carries on), or the error that stopped the polling.
        """
        self._life.check_usable()
        return await self._runner.wait(prediction, self._deadline(timeout))

    async def run(
        self,
        model: ModelArg,
        input: InputArg = None,
        *,
        timeout: float | None = None,
    ) -> Prediction:
        """Create a prediction and wait for it, under the concurrency limit.

        The deadline (`timeout`, else the session's) counts from the call. A create
        in flight is never interrupted, so its id is never lost; a deadline that
        passed meanwhile raises `PredictionTimeout` with that id.
        """
        self._life.check_usable()
        model_id, body = resolve_call(model, input)
        return await self._runner.run(model_id, body, self._deadline(timeout))

    def submit(
        self,
        model: ModelArg,
        input: InputArg = None,
        *,
        timeout: float | None = None,
    ) -> PredictionFuture:
        """Start `run(model, input)` in the background and return its future at once."""
        self._life.check_usable()
        future = PredictionFuture(*resolve_call(model, input))
        self._runner.submit(future, self._deadline(timeout))
        return future

    @overload
    def as_completed(
        self,
        model: str | type[FluxInput],
        inputs: BatchInputs,
        *,
        timeout: float | None = None,
        journal: JournalArg | None = None,
    ) -> BatchIterator: ...

    @overload
    def as_completed(
        self,
        inputs: TypedInputs,
        /,
        *,
        timeout: float | None = None,
        journal: JournalArg | None = None,
    ) -> BatchIterator: ...

    def as_completed(
        self,
        model: str | type[FluxInput] | TypedInputs,
        inputs: BatchInputs | None = None,
        *,
        timeout: float | None = None,
        journal: JournalArg | None = None,
    ) -> BatchIterator:
        """Run one prediction per input; yield a `BatchItem` for each as it finishes.

        Inputs are pulled lazily, one for each free slot of the concurrency window,
        so a huge (or endless) input never sits in memory. A failed item is a
        `BatchItem` with `error` set; its siblings carry on. Stop early with
        `contextlib.aclosing(...)` and `break` (items not read are logged at
        WARNING, each with its id), or with `await items.stop()`, which also
        returns them.

        `model` is `"owner/name"` or a typed input class such as `FluxSchnell`;
        each input is a dict or a typed input, validated when its turn comes (an
        invalid one becomes an item with `InputValidationError`, and costs nothing).
        Without `model` (`as_completed([FluxSchnell(...), FluxDev(...)])`) each
        input must be typed and runs on the model it names; a dict there is an
        invalid input. Either way every item says its model (`BatchItem.model`),
        and every model shares the session's one concurrency window and pace.

        `journal` (a path to an SQLite file, or an object following the `Journal`
        protocol) makes the batch resumable: a rerun with the same journal yields
        finished items again without a request (`BatchItem.resumed`), polls the
        predictions already created, and never creates again an input whose
        create was in flight (`AmbiguousSubmitError`, unless the retry policy
        opts into `retry_ambiguous_creates`). One run at a time holds a journal.
        A `postgresql://...?batch=NAME` URL shares one batch between many
        workers instead, each yielding the items it handled (see "One batch on
        many machines" in the docs).
        """
        return self._start_batch(model, inputs, timeout, journal)

    @overload
    async def gather(
        self,
        model: str | type[FluxInput],
        inputs: BatchInputs,
        *,
        timeout: float | None = None,
        journal: JournalArg | None = None,
    ) -> list[BatchItem]: ...

    @overload
    async def gather(
        self,
        inputs: TypedInputs,
        /,
        *,
        timeout: float | None = None,
        journal: JournalArg | None = None,
    ) -> list[BatchItem]: ...

    async def gather(
        self,
        model: str | type[FluxInput] | TypedInputs,
        inputs: BatchInputs | None = None,
        *,
        timeout: float | None = None,
        journal: JournalArg | None = None,
    ) -> list[BatchItem]:
        """Run one prediction per input; return every `BatchItem` in input order.

        Takes the same arguments as `as_completed`, with or without `model`.
        """
        batch = self._start_batch(model, inputs, timeout, journal)
        return sorted([item async for item in batch], key=lambda item: item.index)

    async def download(
        self,
        prediction: Prediction,
        directory: str | os.PathLike[str],
        *,
        stem: str | None = None,
    ) -> list[Path]:
        """Save every output file of a prediction into `directory`.

        Files are named `{stem}-{n}{ext}` (`stem` defaults to the prediction id),
        streamed to disk and renamed only once whole. Output files live on other
        hosts: they are fetched by a client that never sends the API key.
        Transient failures are retried like queries. Output URLs expire (about an
        hour on Replicate's CDN), so download soon after the prediction finishes.
        """
        self._life.check_usable()
        return await self._parts.downloads.save(prediction, directory, stem)

    def _deadline(self, timeout: float | None) -> float:
        timeout = self.timeout if timeout is None else timeout
        return math.inf if timeout is None else time.monotonic() + timeout

    def _start_batch(
        self,
        model: str | type[FluxInput] | TypedInputs,
        inputs: BatchInputs | None,
        timeout: float | None,
        journal: JournalArg | None,
    ) -> BatchIterator:
        self._life.check_usable()
        model_arg, items = batch_args(model, inputs)
        return start_batch(self._parts.batch, model_arg, items, timeout, journal)
