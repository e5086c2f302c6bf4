"""A batch journal in PostgreSQL, shared by many workers on many machines.

Every worker opens the same URL and batch name. The inputs are recorded once;
each worker then claims items with `SELECT ... FOR UPDATE SKIP LOCKED` under a
lease that a background task renews while the worker lives. An item moves

    queued -> pending (durable, before its create) -> created (durable, with the id)
           -> succeeded | failed | canceled | ambiguous

and a claim is reclaimed once its worker's lease has expired: a `created` item is
handed over to be polled by id, a `pending` one (its create was in flight) becomes
`ambiguous` and is never created again unless the claimer opted in. Every write is
one transaction; every change of a claimed item names its worker, so a worker that
lost its lease cannot overwrite the new owner's work (`ClaimLost`). The create
pacing of all workers is `create_rate.py`'s, held here by composition.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any

import anyio

from comet_replicate_async._exceptions import CometReplicateError, JournalInputChanged
from comet_replicate_async._journal.base import (
    FINAL_STATES,
    JournalRecord,
    input_digest,
)
from comet_replicate_async._journal.shared import (
    BatchStatus,
    Claim,
    RecordedInput,
)

from .create_rate import SharedCreateRate
from .schema import SCHEMA_VERSION, migrate
from .status import LIVE_WORKERS, OPEN_ELSEWHERE, read_status

try:
    import psycopg
    from psycopg.types.json import Jsonb
except ImportError as error:  # pragma: no cover - the optional extra is missing
    raise ImportError(
        "a postgresql:// journal needs the extra: "
        "pip install 'comet-replicate-async[postgresql]'"
    ) from error

__all__ = [
    "SCHEMA_VERSION",
    "ClaimLost",
    "JournalInputChanged",
    "PostgresJournal",
    "input_digest",
]

_log = logging.getLogger("comet_replicate_async.journal")


class ClaimLost(CometReplicateError):
    """This worker's lease expired and another worker took the item over."""


class PostgresJournal:
    """One worker's handle on a shared batch; `async with PostgresJournal(url, ...)`.

    Args:
        url: a libpq URL, `postgresql://user@host/db` (the `PG*` variables and
            `.pgpass` apply, as for psql).
        batch: the batch's name; workers with the same name share its items.
        worker: this worker's id; by default `host:pid:random`.
        lease: seconds a claim outlives its worker's last renewal.
        creates_per_second, create_burst: set the shared create rate (the
            last worker to open with a rate sets it); None leaves it as it is.
        rate_name: the create rate's name; workers of one API key share one.
    """

    def __init__(
        self,
        url: str,
        *,
        batch: str,
        worker: str | None = None,
        lease: float = 30.0,
        creates_per_second: float | None = None,
        create_burst: float = 1.0,
        rate_name: str = "default",
    ) -> None:
        if lease <= 0:
            raise ValueError(f"lease must be positive seconds, got {lease!r}")
        self._url = url
        self.batch = batch
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.worker = worker or f"{self.host}:{self.pid}:{uuid.uuid4().hex[:8]}"
        self.lease = lease
        self.create_rate = SharedCreateRate(self._execute, rate_name)
        self._rate = (creates_per_second, create_burst)
        self._connection: psycopg.AsyncConnection[tuple[Any, ...]] | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._lock = anyio.Lock()
        self.renewals = 0

    def __repr__(self) -> str:
        # The URL may carry a password: never show it.
        return f"<PostgresJournal batch={self.batch!r} worker={self.worker!r}>"

    # -- lifecycle ---------------------------------------------------------

    async def __aenter__(self) -> PostgresJournal:
        self._connection = await psycopg.AsyncConnection.connect(
            self._url, autocommit=True
        )
        try:
            await migrate(self._conn)
            await self._register()
            per_second, burst = self._rate
            if per_second is not None:
                await self.create_rate.set(per_second, burst=burst)
            self._task_group = anyio.create_task_group()
            await self._task_group.__aenter__()
            self._task_group.start_soon(self._renew_forever)
        except BaseException:
            await self._connection.close()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._task_group is not None
        self._task_group.cancel_scope.cancel()
        await self._task_group.__aexit__(None, None, None)
        try:
            # Give up the claims at once rather than after the lease: the next
            # claimer treats them exactly as a dead worker's.
            await self._execute(
                "update comet_replicate.workers set lease_until = clock_timestamp()"
                " where batch = %s and worker = %s",
                (self.batch, self.worker),
            )
        except psycopg.Error as error:  # the lease then ends on its own
            _log.warning("giving up the lease of %s failed: %s", self.worker, error)
        finally:
            await self._conn.close()

    @property
    def _conn(self) -> psycopg.AsyncConnection[tuple[Any, ...]]:
        if self._connection is None:
            raise RuntimeError("use the journal inside `async with`")
        return self._connection

    @contextlib.asynccontextmanager
    async def _transaction(
        self,
    ) -> AsyncIterator[psycopg.AsyncConnection[tuple[Any, ...]]]:
        # One transaction at a time on the connection: a second one opened by
        # another task would nest inside the first as a savepoint. Shielded: a
        # statement cancelled half-way leaves the connection unusable.
        with anyio.CancelScope(shield=True):
            async with self._lock, self._conn.transaction():
                yield self._conn

    async def _execute(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()
    ) -> list[tuple[Any, ...]]:
        async with self._transaction() as connection:
            cursor = await connection.execute(sql, params)
            return await cursor.fetchall() if cursor.description else []

    async def set_create_rate(self, per_second: float, *, burst: float = 1.0) -> None:
        await self.create_rate.set(per_second, burst=burst)

    async def wait_create_turn(self) -> None:
        await self.create_rate.wait_turn()

    async def schema_version(self) -> int:
        rows = await self._execute("select version from comet_replicate.schema")
        return int(rows[0][0])

    async def _register(self) -> None:
        await self._execute(
            "insert into comet_replicate.workers (batch, worker, host, pid, lease_until)"
            " values (%s, %s, %s, %s, clock_timestamp() + make_interval(secs => %s))"
            " on conflict (batch, worker) do update set lease_until ="
            " excluded.lease_until, host = excluded.host, pid = excluded.pid",
            (self.batch, self.worker, self.host, self.pid, self.lease),
        )

    async def renew(self) -> None:
        """Push this worker's lease `lease` seconds ahead (done in the background)."""
        await self._execute(
            "update comet_replicate.workers"
            " set lease_until = clock_timestamp() + make_interval(secs => %s)"
            " where batch = %s and worker = %s",
            (self.lease, self.batch, self.worker),
        )
        self.renewals += 1

    async def _renew_forever(self) -> None:
        while True:
            await anyio.sleep(self.lease / 3)
            try:
                await self.renew()
            except psycopg.Error as error:
                # The next renewal may still make it before the lease ends; if
                # not, the items' new owners fence this worker out.
                _log.warning("renewing the lease of %s failed: %s", self.worker, error)

    # -- items -------------------------------------------------------------

    async def record(self, inputs: Iterable[RecordedInput]) -> int:
        """Record inputs by index, each with its model when given
        (idempotent); returns how many were new.

        Raises `JournalInputChanged`, recording nothing, if a index already
        holds another input, or the same input on another model: call this
        before any create.
        """
        rows = [
            (
                self.batch,
                given[0],
                input_digest(given[1]),
                Jsonb(dict(given[1])),
                given[2] if len(given) > 2 else None,
            )
            for given in inputs
        ]
        if not rows:
            return 0
        indexes = [row[1] for row in rows]
        async with self._transaction() as connection, connection.cursor() as cursor:
            await cursor.execute(
                'select "index", digest, model from comet_replicate.items'
                ' where batch = %s and "index" = any(%s)',
                (self.batch, indexes),
            )
            known = {row[0]: (row[1], row[2]) for row in await cursor.fetchall()}
            for _, index, digest, _, model in rows:
                was_digest, was_model = known.get(index, (digest, model))
                # An item recorded before models were kept has none to compare.
                other_model = None not in (model, was_model) and model != was_model
                if was_digest != digest or other_model:
                    raise JournalInputChanged(
                        f"item {index} of batch {self.batch!r} was recorded with "
                        "another input or model; use another batch name for new "
                        "inputs"
                    )
            new = [row for row in rows if row[1] not in known]
            await cursor.executemany(
                "insert into comet_replicate.items"
                ' (batch, "index", digest, input, model)'
                " values (%s, %s, %s, %s, %s) on conflict do nothing",
                new,
            )
        return len(new)

    async def claim(self, limit: int, *, retry_ambiguous: bool = False) -> list[Claim]:
        """Claim up to `limit` unclaimed items or items of expired leases.

        Items already created come first (they are paid for, and their outputs
        expire). A reclaimed `pending` item comes back `ambiguous`, never to be
        created again, unless `retry_ambiguous` (which may pay twice) returns
        it `queued`.
        """
        rows = await self._execute(
            """
            with open as (
                select i."index" from comet_replicate.items i
                where i.batch = %(batch)s
                    and i.state in ('queued', 'pending', 'created')
                    -- A subquery, not a join: when a row was claimed while this
                    -- statement waited, PostgreSQL checks the claim's new row
                    -- against this again (a join would keep the old holder's).
                    and not exists (
                        select from comet_replicate.workers w
                        where w.batch = i.batch and w.worker = i.worker
                            and w.lease_until >= clock_timestamp()
                    )
                order by i.state = 'queued', i."index"
                limit %(limit)s
                for update of i skip locked
            )
            update comet_replicate.items i set
                worker = %(worker)s,
                claims = i.claims + 1,
                updated_at = clock_timestamp(),
                state = case when i.state <> 'pending' then i.state
                    when %(retry)s then 'queued' else 'ambiguous' end
            from open where i.batch = %(batch)s and i."index" = open."index"
            returning i."index", i.input, i.state, i.prediction_id, i.claims,
                i.model
            """,
            {
                "batch": self.batch,
                "limit": limit,
                "worker": self.worker,
                "retry": retry_ambiguous,
            },
        )
        claims = [Claim(*row) for row in rows]
        return sorted(claims, key=lambda claim: claim.index)

    async def pending(
        self,
        index: int,
        digest: str | None = None,
        *,
        cost: float | None = None,
        model: str | None = None,
    ) -> None:
        """Durably mark a claimed `queued` item as about to be created (its
        digest and model were recorded with it; its cost is kept with its
        outcome)."""
        await self._move(
            index,
            "state = 'pending', created_by = %(worker)s",
            "worker = %(worker)s and state = 'queued'",
        )

    async def created(self, index: int, prediction_id: str) -> None:
        """Durably record the prediction id of an item this worker created.

        An id that arrives after the item was reclaimed as ambiguous still
        counts: the item becomes `created` again, owned by this worker.
        """
        await self._move(
            index,
            "state = 'created', prediction_id = %(id)s, worker = %(worker)s,"
            " outcome = null",
            "(worker = %(worker)s and state = 'pending') or (state = 'ambiguous'"
            " and created_by = %(worker)s and prediction_id is null)",
            id=prediction_id,
        )

    async def unsent(self, index: int) -> None:
        """Its create was provably never sent: queue the claimed item again."""
        await self._move(
            index,
            "state = 'queued', created_by = null",
            "worker = %(worker)s and state in ('queued', 'pending')",
        )

    async def finish(
        self,
        index: int,
        state: str,
        *,
        prediction: Mapping[str, Any] | None = None,
        error: str | None = None,
        prediction_id: str | None = None,
        outcome: Mapping[str, Any] | None = None,
        cost: float | None = None,
    ) -> None:
        """Record a claimed item's end: `prediction` as `prediction_record`
        makes it, an `error`, or any `outcome` (output URLs, files)."""
        if state not in FINAL_STATES:
            raise ValueError(f"not an outcome: {state!r}")
        kept = dict(outcome or {})
        if prediction is not None:
            kept["prediction"] = dict(prediction)
            prediction_id = prediction_id or prediction["id"]
        if error is not None:
            kept["error"] = error
        if cost is not None:
            kept["cost"] = cost
        await self._move(
            index,
            "state = %(state)s, outcome = %(outcome)s,"
            " prediction_id = coalesce(%(id)s, prediction_id)",
            "worker = %(worker)s and state in ('queued', 'pending', 'created')",
            state=state,
            id=prediction_id,
            outcome=Jsonb(kept),
        )

    async def recorded(self) -> dict[int, JournalRecord]:
        """Every recorded item (a shared batch is fed by `claim`, not by this)."""
        rows = await self._execute(
            'select "index", digest, state, prediction_id, outcome, model'
            " from comet_replicate.items where batch = %s",
            (self.batch,),
        )
        return {
            index: JournalRecord(
                index=index,
                digest=digest,
                state="pending" if state == "queued" else state,
                prediction_id=prediction_id,
                prediction=(outcome or {}).get("prediction"),
                error=(outcome or {}).get("error"),
                cost=(outcome or {}).get("cost"),
                model=model,
            )
            for index, digest, state, prediction_id, outcome, model in rows
        }

    async def describe(self, meta: Mapping[str, Any]) -> dict[str, Any]:
        """What the batch was started with: `meta`, unless another worker
        described the batch first (its description is then returned unchanged)."""
        rows: list[tuple[Any, ...]] = []
        while not rows:
            # Empty only when another worker's insert committed while this
            # statement ran: its snapshot misses that row, the next one sees it.
            rows = await self._execute(
                "with new as (insert into comet_replicate.batches (batch, meta)"
                " values (%(batch)s, %(meta)s) on conflict do nothing"
                " returning meta) select meta from new union all select meta"
                " from comet_replicate.batches where batch = %(batch)s",
                {"batch": self.batch, "meta": Jsonb(dict(meta))},
            )
        recorded: dict[str, Any] = rows[0][0]
        return recorded

    async def _move(self, index: int, changes: str, guard: str, **params: Any) -> None:
        rows = await self._execute(
            f"update comet_replicate.items set {changes},"
            " updated_at = clock_timestamp()"
            f' where batch = %(batch)s and "index" = %(index)s and ({guard})'
            ' returning "index"',
            {"batch": self.batch, "index": index, "worker": self.worker} | params,
        )
        if not rows:
            raise ClaimLost(
                f"item {index} of batch {self.batch!r} is no longer held by "
                f"{self.worker} in the state this change needs"
            )

    # -- progress ------------------------------------------------------------

    async def status(self) -> BatchStatus:
        """Counts by state for the whole batch, and per worker."""
        async with self._lock:
            return await read_status(self._conn, self.batch)

    async def open_elsewhere(self) -> int:
        rows = await self._execute(OPEN_ELSEWHERE, (self.batch, self.worker))
        return int(rows[0][0])

    async def live_workers(self) -> int:
        rows = await self._execute(LIVE_WORKERS, (self.batch,))
        return max(1, int(rows[0][0]))
