"""`FakeCometAPI`: CometAPI's Replicate routes on a real loopback server."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, Final, Self

import attrs
from aiohttp import web

from comet_replicate_async._money.prices import FALLBACK_PRICES

from ._catalogue import catalogue_json
from ._faults import Fault, FaultRates, check_probability
from ._http import (
    PREDICTION_ID,
    answer,
    authorized,
    invalid_token,
    moved,
    prefer_wait,
    read_input,
    request_log,
    send,
)
from ._images import image_for
from ._limit_shapes import (
    CreateLimiter,
    InFlightCap,
    create_limiter,
    quota_headers,
    refusal,
)
from ._models import ServedModels
from ._predictions import (
    Latency,
    PredictionRecord,
    draw_final_status,
    latency_for,
    new_prediction,
    output_index,
)
from ._replies import Reply, comet_error, json_reply, new_request_id
from ._scripts import FaultScripts, PollTarget, ScriptedRoute
from ._stats import FakeStats
from ._time import MONOTONIC, ServerClock

__all__ = ["FakeCometAPI", "ScriptedRoute"]

#: Predictions take 50 ms unless told otherwise: quick tests, yet observable.
DEFAULT_LATENCY: Final = Latency.constant(0.05)
CREATE_ROUTE: Final = "/replicate/v1/models/{owner}/{name}/predictions"


def _on_clock(part: Callable[..., Any]) -> Any:
    """A default that makes the part with the server's clock."""
    return attrs.Factory(lambda fake: part(clock=fake.clock), takes_self=True)


# Settings are fixed at construction (the fault plan is derived from them), and
# a server compares by identity.
@attrs.define(kw_only=True, eq=False, on_setattr=attrs.setters.frozen)
class FakeCometAPI:
    """A fake CometAPI speaking the Replicate prediction routes over real HTTP.

    Usage:

    ```python
    async with FakeCometAPI(latency={"flux-schnell": Latency.constant(0.05)}) as fake:
        ...  # point the client at fake.base_url with fake.api_key
    ```

    It serves the seven FLUX models; a create for any other is refused as
    CometAPI refuses it (503, `model_not_found`), unless *extra_models* or
    `serve` adds it. Output files are served from a second origin,
    `files_base_url`, standing in for `replicate.delivery`. Random faults are drawn from one
    generator seeded with *seed*; scripted faults (`script`) come first.

    Args:
        api_key: The only accepted bearer token.
        latency: Run-time distribution per model, keyed by `owner/name` or a
            bare name such as `"flux-schnell"`; or one distribution for all.
        default_latency: For models *latency* does not name.
        failure_rate: Share of predictions that end `failed` (NSFW error).
        abort_rate: Share of predictions that end `aborted`.
        server_error_rate: Share of create and query requests answered with a
            5xx (500, 502, 503, 504 or 524) in CometAPI's envelope.
        ghost_share: Share of those create 5xx that create the prediction first
            and then reply 502.
        reset_rate: Share of create and query requests whose connection is
            reset without a reply (for creates, half after creating).
        malformed_rate: Share answered with an HTML 502 page or truncated JSON
            (creates are created first).
        slow_rate: Share answered normally after *slow_delay* seconds.
        slow_delay: See *slow_rate*.
        creates_per_minute: Accepted creates per *rate_window* (a sliding
            window, as Replicate documents); more get 429 with `Retry-After`.
            `None`: unlimited.
        rate_window: Length of the sliding window, seconds.
        creates_per_second: A token bucket instead: this many creates a
            second, bursts of *burst*; more get 429 with `Retry-After`.
        burst: The bucket's size.
        rate_counts_queries: The window or the bucket counts queries too.
        max_in_flight: A per-key cap on API requests (creates and queries) in
            flight at once, as gateways built on new-api have: one more gets a
            429 without `Retry-After`.
        create_delay: Seconds each create takes on the server (the gateway
            forwarding it), during which it counts as in flight.
        query_delay: The same for queries.
        ratelimit_headers: Send `ratelimit-limit`, `ratelimit-remaining` and
            `ratelimit-reset` (seconds, decimals) on create replies, for the
            window or the bucket.
        prices: Per-request prices in US dollars, by `owner/name`, served by
            the public model catalogue `GET /api/models` (in CometAPI's shape);
            the bundled estimates by default.
        filtered_outputs: Output images the safety filter drops from each
            succeeded prediction that asked for several (`num_outputs`); one
            is always left, as a prediction whose every image is dropped fails.
        extra_models: Model ids (`owner/name`) served besides the seven FLUX
            models.
        seed: Seed of the random faults, latencies and outcomes.
        clock: Its time (`now()`, seconds): run times, rate limits, outages.
        host: Interface to listen on.
        port: API port (0: any free port).
    """

    api_key: str = "test-key"
    latency: Mapping[str, Latency] | Latency = attrs.field(factory=dict)
    default_latency: Latency = DEFAULT_LATENCY
    failure_rate: float = attrs.field(default=0.0, validator=check_probability)
    abort_rate: float = attrs.field(default=0.0, validator=check_probability)
    server_error_rate: float = 0.0
    ghost_share: float = 0.0
    reset_rate: float = 0.0
    malformed_rate: float = 0.0
    slow_rate: float = 0.0
    slow_delay: float = 1.0
    creates_per_minute: int | None = None
    rate_window: float = 60.0
    creates_per_second: float | None = None
    burst: int = 1
    rate_counts_queries: bool = False
    max_in_flight: int | None = None
    create_delay: float = 0.0
    query_delay: float = 0.0
    ratelimit_headers: bool = False
    prices: Mapping[str, float] = FALLBACK_PRICES
    filtered_outputs: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    extra_models: Iterable[str] = ()
    seed: int | None = None
    clock: ServerClock = attrs.field(default=MONOTONIC, repr=False)
    host: str = "127.0.0.1"
    port: int = 0
    stats: FakeStats = attrs.field(default=_on_clock(FakeStats), init=False, repr=False)
    _rates: FaultRates = attrs.field(init=False, repr=False)
    _limiter: CreateLimiter | None = attrs.field(init=False, repr=False)
    _rng: random.Random = attrs.field(init=False, repr=False)
    _scripts: FaultScripts = attrs.field(default=_on_clock(FaultScripts), init=False)
    _served: ServedModels = attrs.field(init=False, repr=False)
    _cap: InFlightCap = attrs.field(init=False, repr=False)
    # The only attributes that change after construction: which ports are open.
    _runners: list[web.AppRunner] = attrs.field(
        factory=list, init=False, repr=False, on_setattr=attrs.setters.NO_OP
    )
    _base_url: str | None = attrs.field(
        default=None, init=False, on_setattr=attrs.setters.NO_OP
    )
    _files_base_url: str | None = attrs.field(
        default=None, init=False, repr=False, on_setattr=attrs.setters.NO_OP
    )

    @_rates.default
    def _make_rates(self) -> FaultRates:
        return FaultRates(
            server_error_rate=self.server_error_rate,
            ghost_share=self.ghost_share,
            reset_rate=self.reset_rate,
            malformed_rate=self.malformed_rate,
            slow_rate=self.slow_rate,
            slow_delay=self.slow_delay,
        )

    @_limiter.default
    def _make_limiter(self) -> CreateLimiter | None:
        return create_limiter(
            creates_per_minute=self.creates_per_minute,
            rate_window=self.rate_window,
            creates_per_second=self.creates_per_second,
            burst=self.burst,
        )

    @_cap.default
    def _make_cap(self) -> InFlightCap:
        return InFlightCap(self.max_in_flight)

    @_rng.default
    def _make_rng(self) -> random.Random:
        return random.Random(self.seed)

    @_served.default
    def _make_served(self) -> ServedModels:
        return ServedModels.of(self.extra_models)

    def __attrs_post_init__(self) -> None:
        if self.failure_rate + self.abort_rate > 1.0:
            msg = "failure_rate + abort_rate > 1"
            raise ValueError(msg)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Start listening on the API and files ports.

        Raises:
            RuntimeError: Already started.
        """
        if self._runners:
            msg = "FakeCometAPI is already started"
            raise RuntimeError(msg)
        try:
            api_port = await self._serve(self._api_app(), self.port)
            self._base_url = f"http://{self.host}:{api_port}"
            files_port = await self._serve(self._files_app(), 0)
            self._files_base_url = f"http://{self.host}:{files_port}"
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Stop listening; in-flight handlers are cancelled. Idempotent."""
        runners, self._runners = self._runners, []
        for runner in runners:
            await runner.cleanup()

    async def _serve(self, app: web.Application, port: int) -> int:
        # A slow or delayed handler must not hold close() up for long, and a
        # client that gave up should not keep its handler sleeping.
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=0.5
        )
        await runner.setup()
        self._runners.append(runner)
        site = web.TCPSite(runner, self.host, port)
        await site.start()
        # One site per runner, so its only address tells which port was picked.
        return int(runner.addresses[0][1])

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT`, the API root to give the client."""
        if self._base_url is None:
            msg = "FakeCometAPI is not started"
            raise RuntimeError(msg)
        return self._base_url

    @property
    def files_base_url(self) -> str:
        """Origin of the output files (stands in for `replicate.delivery`)."""
        if self._files_base_url is None:
            msg = "FakeCometAPI is not started"
            raise RuntimeError(msg)
        return self._files_base_url

    @property
    def predictions(self) -> Mapping[str, PredictionRecord]:
        """Read-only view of every prediction created, by id."""
        return MappingProxyType(self.stats.predictions)

    @property
    def models(self) -> frozenset[str]:
        """The model ids it serves: the FLUX models and those added."""
        return self._served.ids

    def serve(self, *models: str) -> None:
        """Serve *models* (`owner/name` ids) too, from now on; `reset` keeps them."""
        self._served.add(models)

    def script(self, route: ScriptedRoute, *faults: Fault) -> None:
        """Queue *faults* for the next requests to *route*, one per request.

        Scripted faults take priority over random faults and throttling; a
        request that fails authentication or validation still uses one up.
        """
        self._scripts.script(route, faults)

    def script_polls(
        self, which: PollTarget, *faults: Fault, repeat_last: bool = False
    ) -> None:
        """Queue *faults* for the next polls of one prediction, one per poll.

        Other predictions are polled as usual, so a test can give one prediction
        odd replies (`Fault.raw`) and watch its siblings finish normally. Route
        scripts (`script("query", ...)`) still come first.

        Args:
            which: A prediction id, or a test on each prediction created from
                now on (e.g. `lambda record: record.input["prompt"] == "odd"`);
                every prediction it matches gets its own copy of *faults*.
            faults: One per poll; polls after the last are answered normally.
            repeat_last: The last fault answers every later poll instead.
        """
        self._scripts.script_polls(which, faults, repeat_last)

    def script_outage(self, seconds: float, *, from_first_create: bool = False) -> None:
        """Answer every create with nginx's HTML 502 page for *seconds*, creating
        nothing; from now, or from the next create (*from_first_create*)."""
        self._scripts.outage(seconds, from_first_create=from_first_create)

    def reset(self) -> None:
        """Forget predictions, statistics, scripts, outage and throttle window."""
        self.stats.clear()
        self._scripts.clear()
        if self._limiter is not None:
            self._limiter.clear()

    def _api_app(self) -> web.Application:
        app = web.Application(middlewares=[request_log(self.stats)])
        app.router.add_post(CREATE_ROUTE, self._create, name="create")
        app.router.add_get("/replicate/v1/predictions/{id}", self._query, name="query")
        app.router.add_get("/api/models", self._catalogue, name="catalogue")
        app.router.add_get("/_fake/stats", self._stats, name="control")
        app.router.add_post("/_fake/reset", self._reset, name="control-reset")
        app.router.add_route("*", "/moved/{tail:.*}", moved, name="other")
        return app

    def _files_app(self) -> web.Application:
        app = web.Application(middlewares=[request_log(self.stats)])
        app.router.add_get("/xezq/{id}/{file}", self._file, name="file")
        app.router.add_route("*", "/moved/{tail:.*}", moved, name="other")
        return app

    async def _create(self, request: web.Request) -> web.StreamResponse:
        return await self._cap.run(request, self._create_capped, self.create_delay)

    async def _query(self, request: web.Request) -> web.StreamResponse:
        return await self._cap.run(request, self._query_capped, self.query_delay)

    async def _create_capped(self, request: web.Request) -> web.StreamResponse:
        request_id = new_request_id()
        fault = self._scripts.next("create")
        if not authorized(request, self.api_key):
            return send(request, invalid_token(request_id), request_id)
        model = f"{request.match_info['owner']}/{request.match_info['name']}"
        unserved = self._served.refusal(model, request_id)
        if unserved is not None:
            return send(request, unserved, request_id)
        input_or_error = await read_input(request, request_id)
        if isinstance(input_or_error, Reply):
            return send(request, input_or_error, request_id)
        if fault is None:
            fault = refusal(self._limiter, self.clock.now()) or self._rates.draw(
                "create", self._rng
            )
        wait = prefer_wait(request.headers.get("Prefer", ""))

        async def create() -> Reply:
            prediction = self._new_prediction(model, input_or_error)
            request[PREDICTION_ID] = prediction.id
            if wait:
                remaining = prediction.terminal_monotonic - self.clock.now()
                await asyncio.sleep(max(0.0, min(remaining, wait)))
            body = prediction.to_json(self.clock.now())
            return json_reply(201, body, prediction_id=prediction.id)

        response = await answer(request, request_id, fault, create)
        if self.ratelimit_headers and self._limiter is not None:
            response.headers.update(quota_headers(self._limiter, self.clock.now()))
        return response

    async def _query_capped(self, request: web.Request) -> web.StreamResponse:
        request_id = new_request_id()
        fault = self._scripts.next("query")
        if not authorized(request, self.api_key):
            return send(request, invalid_token(request_id), request_id)
        prediction_id = request.match_info["id"]
        request[PREDICTION_ID] = prediction_id
        if fault is None and self.rate_counts_queries:
            fault = refusal(self._limiter, self.clock.now())
        if fault is None:
            fault = self._scripts.next_poll(prediction_id)
        if fault is None:
            fault = self._rates.draw("query", self._rng)

        async def query() -> Reply:
            prediction = self.stats.predictions.get(prediction_id)
            if prediction is None:
                return comet_error(404, "prediction not found", request_id, code="")
            return json_reply(200, prediction.to_json(self.clock.now()))

        return await answer(request, request_id, fault, query)

    async def _file(self, request: web.Request) -> web.StreamResponse:
        request_id = new_request_id()
        fault = self._scripts.next("file") or Fault.ok()
        prediction_id = request.match_info["id"]
        request[PREDICTION_ID] = prediction_id

        async def download() -> Reply:
            prediction = self.stats.predictions.get(prediction_id)
            file_name = request.match_info["file"]
            index = output_index(prediction, file_name, self.clock.now())
            if index is None:
                return Reply(404, b"Not Found", "text/plain")
            prompt = str(self.stats.predictions[prediction_id].input["prompt"])
            return Reply(200, image_for(prompt, index), "image/png")

        return await answer(request, request_id, fault, download)

    async def _catalogue(self, request: web.Request) -> web.StreamResponse:
        # Public, as CometAPI's is: no key needed.
        request_id = new_request_id()
        fault = self._scripts.next("catalogue") or Fault.ok()

        async def catalogue() -> Reply:
            return json_reply(200, catalogue_json(self.prices))

        return await answer(request, request_id, fault, catalogue)

    async def _stats(self, request: web.Request) -> web.StreamResponse:
        include_log = request.query.get("log", "") not in {"", "0", "false"}
        return web.json_response(self.stats.to_json(include_log=include_log))

    async def _reset(self, request: web.Request) -> web.StreamResponse:
        self.reset()
        return web.json_response({"reset": True})

    def _new_prediction(self, model: str, input: Mapping[str, Any]) -> PredictionRecord:
        outcome = draw_final_status(self._rng, self.failure_rate, self.abort_rate)
        latency = latency_for(model, self.latency, self.default_latency)
        prediction = new_prediction(
            model=model,
            input=input,
            latency=latency.draw(self._rng),
            final_status=outcome,
            files_base_url=self.files_base_url,
            rng=self._rng,
            now=self.clock.now(),
            filtered_outputs=self.filtered_outputs,
        )
        self.stats.record_prediction(prediction)
        self._scripts.created(prediction)
        return prediction
