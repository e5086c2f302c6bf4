"""`Session`: the one object users hold. This module owns its lifecycle and calls."""

from __future__ import annotations

import asyncio
import enum
import inspect
import logging
import math
import os
import time
from collections.abc import (
    AsyncIterable,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
)
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import anyio
from anyio.abc import TaskGroup

from ._batch import BatchIterator, log_abandoned
from ._batch_feed import BATCH_CREATES, JournalArg, start_batch
from ._budget import Reservation
from ._calls import Calls
from ._config import (
    RequestTimeout,
    resolve_api_key,
    resolve_base_url,
    resolve_request_timeout,
)
from ._downloads import Downloads
from ._exceptions import (
    CometReplicateError,
    PredictionAbandoned,
    PredictionTimeout,
    deadline_passed,
    error_for_status,
)
from ._futures import PredictionFuture
from ._handoff import CreateHandoff
from ._inputs import FluxInput, InputArg, ModelArg, resolve_call
from ._limits import ConcurrencyWindow, CreatePacer
from ._poller import Poller
from ._registry import Registry
from ._retry import (
    RetryPolicy,
)
from ._sansio import (
    RequestSpec,
    build_create_request,
    build_query_request,
)
from ._schedule import PollPolicy
from ._spending import Spending
from ._stats import Event, EventHandler, EventKind, SessionStats, StatsCounter
from ._transport import AiohttpTransport, ClientSession
from ._transport_protocol import Transport
from ._values import BatchItem, Prediction, Status

__all__ = ["Session"]

logger = logging.getLogger("comet_replicate_async")

BatchInput = Mapping[str, Any] | FluxInput
# Told of each new prediction as its create answers, whatever became of the caller.
OnCreated = Callable[[Prediction], Awaitable[None] | None]


# The default per-prediction deadline, in seconds. Replicate ends a prediction
# after 30 minutes; five more cover a queue at the gateway and the last polls. A
# finite default means no wait hangs on a prediction the server never finishes.
DEFAULT_TIMEOUT = 35 * 60.0


class _State(enum.Enum):
    UNOPENED = "unopened"  # built, not entered yet
    OPENED = "opened"  # inside `async with`: requests may be sent
    CLOSED = "closed"  # left or aclose()d: a session is never reopened


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
    ) -> None:
        if prefer_wait is not None and not 1 <= prefer_wait <= 60:
            raise ValueError(f"prefer_wait must be 1 to 60 seconds, got {prefer_wait}")
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        if transport is not None and (api_key is not None or http_session is not None):
            raise ValueError(
                "a transport of your own authenticates and sends the requests: "
                "pass api_key and http_session to it, not to Session"
            )
        self.base_url = resolve_base_url(base_url)
        self.retry = retry or RetryPolicy()
        self.poll = poll or PollPolicy()
        self.timeout = timeout
        self.request_timeout = resolve_request_timeout(request_timeout)
        self.prefer_wait = prefer_wait
        self.server_deadline = server_deadline
        self._window = ConcurrencyWindow(max_concurrency, adaptive=adaptive_concurrency)
        # Every open connection holds buffers (about 13 KiB) whether used or not:
        # enough for the polls and the batch creates at once, and no more.
        connection_limit = self.poll.max_concurrent_queries + BATCH_CREATES
        self._transport: Transport = (
            AiohttpTransport(
                self.base_url,
                resolve_api_key(api_key),
                self.request_timeout,
                http_session=http_session,
                connection_limit=connection_limit,
            )
            if transport is None
            else transport
        )
        self._on_event = on_event
        self._counters = StatsCounter()
        self._calls = Calls(
            self._transport,
            retry=self.retry,
            poll=self.poll,
            window=self._window,
            pacer=CreatePacer(creates_per_minute),
            counters=self._counters,
            emit=self._emit,
        )
        self._downloads = Downloads(self._calls, download_concurrency)
        self._spending = Spending(
            self._transport, base_url=self.base_url, cap=max_cost, prices=prices
        )
        self._registry = Registry()
        self._poller = Poller(
            self._registry,
            self._calls.query_once,
            policy=self.poll,
            retry=self.retry,
            on_update=self._on_poll_update,
        )
        self._state = _State.UNOPENED
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task_group: TaskGroup | None = None
        # Background jobs (submitted futures, batch feeders) a normal close waits for.
        self._jobs = 0
        self._jobs_finished = anyio.Event()
        self._jobs_finished.set()
        # Set by a close with a grace period: no create is sent any more.
        self._closing = False
        self._futures: set[PredictionFuture] = set()

    def __repr__(self) -> str:
        return f"<Session base_url={self.base_url!r} state={self._state.value}>"

    @property
    def stats(self) -> SessionStats:
        """A snapshot of the live counters."""
        return self._counters.snapshot(
            watched=len(self._registry),
            concurrency_limit=self._window.limit,
            create_rate=self._calls.pacer.rate,
            spent=self._spending.ledger.spent,
            reserved=self._spending.ledger.reserved,
        )

    # Lifecycle

    async def __aenter__(self) -> Self:
        if self._state is _State.OPENED:
            raise RuntimeError("this Session is already open")
        if self._state is _State.CLOSED:
            raise RuntimeError("a closed Session cannot be reopened; make a new one")
        self._loop = asyncio.get_running_loop()
        self._transport.open()
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        try:
            await task_group.start(self._poller.run)
        except BaseException:
            task_group.cancel_scope.cancel()
            await task_group.__aexit__(None, None, None)
            await self._transport.aclose()
            raise
        self._task_group = task_group
        self._state = _State.OPENED
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close(abandon=exc is not None)

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
        if grace is not None and grace < 0:
            raise ValueError(f"grace must be 0 or more seconds, got {grace}")
        await self._close(abandon=False, grace=grace)

    async def _close(self, *, abandon: bool, grace: float | None = None) -> None:
        if self._state is not _State.OPENED:
            self._state = _State.CLOSED
            return
        if not abandon and grace is not None:
            self._closing = True
            self._window.fail_waiters(_not_started)
            with anyio.move_on_after(grace):
                await self._jobs_finished.wait()
            abandon = self._jobs > 0
        if abandon:
            self._state = _State.CLOSED
            self._abandon_outstanding()
        else:
            await self._jobs_finished.wait()
        self._state = _State.CLOSED
        task_group, self._task_group = self._task_group, None
        assert task_group is not None
        task_group.cancel_scope.cancel()
        # The user's exception, if any, is not handed to the task group: it must
        # propagate as itself, never wrapped in an ExceptionGroup.
        try:
            await task_group.__aexit__(None, None, None)
        finally:
            self._spending.close()
            await self._transport.aclose()

    def _abandon_outstanding(self) -> None:
        # Cancelling the task group (in _close) stops them; say which ids are left
        # running remotely, so nobody pays for a result they cannot find.
        ids = self._registry.ids()
        if ids:
            logger.warning(
                "closing: abandoning %d unfinished prediction(s), which keep running "
                "and are billed: %s",
                len(ids),
                ", ".join(ids),
            )
        # Callers in other tasks would wait forever for a poller that is stopping:
        # each ends now with the id it was waiting for.
        for entry in self._registry.entries():
            if not entry.outcome.done():
                entry.outcome.set_exception(_closed_while_waiting(entry.prediction))
                entry.outcome.exception()  # its waiters raise it; nothing to log
        self._window.fail_waiters(_not_started)

    def _check_usable(self) -> None:
        if self._state is not _State.OPENED:
            if self._state is _State.UNOPENED:
                raise RuntimeError(
                    "Session is not open: use 'async with Session() as session:'"
                )
            raise RuntimeError("Session is closed")
        if asyncio.get_running_loop() is not self._loop:
            raise RuntimeError(
                "this Session belongs to another event loop; open one Session per loop"
            )

    # Single calls

    async def create(
        self,
        model: ModelArg,
        input: InputArg = None,
        *,
        on_created: OnCreated | None = None,
    ) -> Prediction:
        """Start one prediction: a single create call, at most once.

        `model` is `"owner/name"` with a dict or typed `input`, or a typed input
        alone (`FluxSchnell(prompt=...)`); bad ones raise `InputValidationError`
        before any request. A 429 or a connection that failed before sending is
        retried; a failure after the request was sent raises `AmbiguousSubmitError`
        (unless the retry policy opts into `retry_ambiguous_creates`, which may pay
        twice).

        `on_created` (a function, or an async one) is called with the new
        prediction as soon as the create answers, and awaited before this call
        returns: even if the caller was cancelled meanwhile, so a journal it
        writes never misses a billed id. What it raises is logged, not raised.
        """
        self._check_usable()
        model_id, body = resolve_call(model, input)
        self._job_started()  # a normal close waits for it, whichever task it runs in
        try:
            return await self._create(model_id, body, on_created)
        finally:
            self._job_done()

    async def _create(
        self,
        model: str,
        input: dict[str, Any],
        on_created: OnCreated | None = None,
        deadline: float = math.inf,
        stopped: Callable[[], CometReplicateError | None] | None = None,
        reservation: Reservation | None = None,
    ) -> Prediction:
        """Create, retrying what provably created nothing until `deadline`.

        `stopped` tells whether the batch has stopped creating (and why): checked
        before each attempt that would be the first to reach the server. The
        create's price is reserved first, unless the caller did (`reservation`).
        """
        spec = build_create_request(
            model,
            input,
            prefer_wait=self.prefer_wait,
            cancel_after=self._cancel_after(deadline),
        )
        read_timeout = None if self.prefer_wait is None else self.prefer_wait + 5.0
        return await self._spending.spend(
            model,
            input,
            lambda: self._calls.create(
                model,
                input,
                lambda: self._hand_off_create(spec, read_timeout, on_created),
                deadline=deadline,
                stopped=stopped,
            ),
            reservation,
        )

    async def _hand_off_create(
        self,
        spec: RequestSpec,
        read_timeout: float | None,
        on_created: OnCreated | None,
    ) -> Prediction:
        """Send one create from a task of the session and wait for its answer.

        Once sent, a create is never interrupted and its id never lost, whatever
        cancels the caller (a scope, `task.cancel()`, `wait_for`, a server
        cancelling its handler): the caller stops waiting at once, and the task
        finishes the create and logs the id.
        """
        if self._closing or self._state is not _State.OPENED:
            raise _not_started()
        assert self._loop is not None
        assert self._task_group is not None
        handoff = CreateHandoff(self._loop.create_future())
        self._job_started()
        self._task_group.start_soon(
            self._send_create, spec, read_timeout, on_created, handoff
        )
        try:
            return await asyncio.shield(handoff.answer)
        except asyncio.CancelledError:
            handoff.caller_left()
            raise

    async def _send_create(
        self,
        spec: RequestSpec,
        read_timeout: float | None,
        on_created: OnCreated | None,
        handoff: CreateHandoff,
    ) -> None:
        try:
            if handoff.caller_gone:
                handoff.failed(asyncio.CancelledError())  # never sent
                return
            if self._closing or self._state is not _State.OPENED:  # closing meanwhile
                handoff.failed(_not_started())
                return
            # Never interrupted once sent: a cancel must not lose a paid-for id.
            with anyio.CancelScope(shield=True):
                try:
                    prediction = await self._calls.send(spec, read_timeout=read_timeout)
                except Exception as error:
                    handoff.failed(error)
                    return
            self._window.on_success()
            self._emit(Event("created", prediction=prediction))
            if on_created is not None:
                with anyio.CancelScope(shield=True):
                    await _call_on_created(on_created, prediction)
            handoff.created(prediction)
        finally:
            self._job_done()

    async def get(self, prediction_id: str) -> Prediction:
        """Read one prediction's current state: a single query call, with retries."""
        self._check_usable()
        return await self._calls.get(prediction_id)

    # Waiting through the poller

    async def wait(
        self, prediction: Prediction | str, *, timeout: float | None = None
    ) -> Prediction:
        """Wait for a prediction to finish, through the shared poller.

        Returns the succeeded prediction; raises `PredictionFailed`,
        `PredictionCanceled`, `PredictionTimeout` (the local deadline passed; the
        remote prediction carries on), or the error that stopped the polling.
        """
        self._check_usable()
        if isinstance(prediction, str):
            build_query_request(prediction)  # validates the id before any request
            prediction = Prediction(id=prediction, status=Status.STARTING)
        deadline = self._deadline(timeout)
        self._job_started()
        try:
            return await self._wait_until(prediction, deadline)
        finally:
            self._job_done()

    async def _wait_until(self, prediction: Prediction, deadline: float) -> Prediction:
        if prediction.done:
            return _outcome(prediction)
        if self._state is not _State.OPENED:
            raise _closed_while_waiting(prediction)
        entry = self._poller.watch(prediction)
        self._registry.acquire(entry)
        try:
            with anyio.move_on_after(deadline - time.monotonic()):
                final = await asyncio.shield(entry.outcome)
                return _outcome(final)
            raise deadline_passed(entry.prediction)
        finally:
            self._registry.release(entry)

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
        self._check_usable()
        model_id, body = resolve_call(model, input)
        deadline = self._deadline(timeout)
        self._counters.started()
        # A normal close waits for this call, whichever task it runs in.
        self._job_started()
        try:
            await self._acquire_slot(deadline)
            return await self._run_in_slot(model_id, body, deadline)
        finally:
            self._job_done()

    async def _acquire_slot(self, deadline: float) -> None:
        """Wait for a concurrency slot, but not past the deadline."""
        try:
            with anyio.move_on_after(deadline - time.monotonic()):
                await self._window.acquire()
                return
        except PredictionAbandoned:
            self._counters.finished(succeeded=False)
            raise
        except anyio.get_cancelled_exc_class():
            self._counters.cancelled()
            raise
        self._counters.finished(succeeded=False)
        raise PredictionTimeout(
            "the deadline passed while waiting for a free slot; nothing was created",
            None,
        )

    async def _run_in_slot(
        self,
        model: str,
        input: dict[str, Any],
        deadline: float,
        on_created: OnCreated | None = None,
    ) -> Prediction:
        """Create and wait, holding a window slot taken by the caller; free it after."""
        try:
            created = await self._create_by(model, input, deadline, on_created)
        except anyio.get_cancelled_exc_class():
            self._counters.cancelled()
            self._window.release()
            raise
        except BaseException:
            self._counters.finished(succeeded=False)
            self._window.release()
            raise
        # None once counted as cancelled.
        succeeded: bool | None = False
        try:
            result = await self._wait_until(created, deadline)
            succeeded = True
            return result
        except anyio.get_cancelled_exc_class():
            if not created.done:
                log_abandoned(created, "stopped waiting (cancelled)")
            self._counters.cancelled()
            succeeded = None
            raise
        finally:
            if succeeded is not None:
                self._counters.finished(succeeded=succeeded)
            self._window.release()

    async def _create_by(
        self,
        model: str,
        input: dict[str, Any],
        deadline: float,
        on_created: OnCreated | None = None,
        stopped: Callable[[], CometReplicateError | None] | None = None,
        reservation: Reservation | None = None,
    ) -> Prediction:
        """Create unless the deadline has passed; raise if it passed meanwhile."""
        if time.monotonic() >= deadline:
            raise PredictionTimeout(
                "the deadline passed before the create; nothing was created", None
            )
        created = await self._create(
            model, input, on_created, deadline, stopped, reservation
        )
        if time.monotonic() >= deadline and not created.done:
            raise PredictionTimeout(
                f"prediction {created.id} was created after its deadline; "
                "it may still run and be billed",
                created,
            )
        return created

    def submit(
        self,
        model: ModelArg,
        input: InputArg = None,
        *,
        timeout: float | None = None,
    ) -> PredictionFuture:
        """Start `run(model, input)` in the background and return its future at once."""
        self._check_usable()
        future = PredictionFuture(*resolve_call(model, input))
        self._counters.started()
        self._job_started()
        self._futures.add(future)
        assert self._task_group is not None
        self._task_group.start_soon(self._run_future, future, self._deadline(timeout))
        return future

    async def _run_future(self, future: PredictionFuture, deadline: float) -> None:
        prediction: Prediction | None = None
        error: BaseException | None = None
        try:
            with anyio.CancelScope() as scope:
                future._cancel_scope = scope
                if future._cancel_requested:
                    scope.cancel()
                await self._acquire_slot(deadline)
                prediction = await self._run_in_slot(
                    future.model, future.input, deadline, on_created=future._update
                )
            if prediction is None:
                error = asyncio.CancelledError("canceled by PredictionFuture.cancel()")
        except Exception as exc:
            error = exc
        except BaseException:
            error = _closed_while_waiting(future.prediction)
            raise
        finally:
            future._finish(prediction, error)
            self._futures.discard(future)
            self._job_done()

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
        self._check_usable()
        return await self._downloads.save(prediction, directory, stem)

    # Batches

    def as_completed(
        self,
        model: str | type[FluxInput],
        inputs: Iterable[BatchInput] | AsyncIterable[BatchInput],
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
        self._check_usable()
        return start_batch(self, model, inputs, timeout, journal)

    async def gather(
        self,
        model: str | type[FluxInput],
        inputs: Iterable[BatchInput] | AsyncIterable[BatchInput],
        *,
        timeout: float | None = None,
        journal: JournalArg | None = None,
    ) -> list[BatchItem]:
        """Run one prediction per input; return every `BatchItem` in input order."""
        batch = self.as_completed(model, inputs, timeout=timeout, journal=journal)
        items = [item async for item in batch]
        items.sort(key=lambda item: item.index)
        return items

    # Plumbing

    def _deadline(self, timeout: float | None) -> float:
        timeout = self.timeout if timeout is None else timeout
        return math.inf if timeout is None else time.monotonic() + timeout

    def _cancel_after(self, deadline: float) -> float | None:
        """Seconds left for `Cancel-After`, with `server_deadline` and a deadline."""
        if not self.server_deadline or deadline == math.inf:
            return None
        return max(deadline - time.monotonic(), 0.001)  # the header wants > 0

    def _job_started(self) -> None:
        self._jobs += 1
        if self._jobs_finished.is_set():
            self._jobs_finished = anyio.Event()

    def _job_done(self) -> None:
        self._jobs -= 1
        if self._jobs == 0:
            self._jobs_finished.set()

    def _on_poll_update(self, previous: Prediction, current: Prediction) -> None:
        if current.done:
            self._spending.ended(current)
        if current.status != previous.status and self._on_event is not None:
            kind: EventKind = "finished" if current.done else "status"
            self._emit(Event(kind, prediction=current))

    def _emit(self, event: Event) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(event)
        except Exception:
            logger.exception("on_event handler raised; ignored")


async def _call_on_created(on_created: OnCreated, prediction: Prediction) -> None:
    try:
        result = on_created(prediction)
        if inspect.isawaitable(result):
            await result
    except Exception:
        logger.exception("on_created raised for prediction %s; ignored", prediction.id)


def _not_started() -> PredictionAbandoned:
    return PredictionAbandoned(
        "not started: the session is closing; nothing was created", None
    )


def _closed_while_waiting(prediction: Prediction | None) -> PredictionAbandoned:
    """The error of a caller whose session closed under it."""
    if prediction is None:
        return PredictionAbandoned(
            "the session closed before the create answered", None
        )
    return PredictionAbandoned(
        f"the session closed while waiting for prediction "
        f"{prediction.id} (last status: {prediction.status}); it may still run "
        f"and be billed: another session's wait({prediction.id!r}) picks it up",
        prediction,
    )


def _outcome(prediction: Prediction) -> Prediction:
    """The succeeded prediction, or raise the error its terminal status stands for."""
    error = error_for_status(prediction)
    if error is not None:
        raise error
    return prediction
