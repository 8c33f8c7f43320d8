"""One Redis round trip per event-loop tick: every lookup of the tick in one ``MGET``.

    pipe = TickPipeline(client, breaker, timeout_s=0.05)
    ok, value = await pipe.get("falcon:cache:k")            # joins this tick's MGET
    pipe.set_later("falcon:cache:k", b"...", px=600_000)     # off the response path
    ok, existing = await pipe.claim("falcon:idem:k", b"...", px=86_400_000)  # SET NX, then GET
    await pipe.drain(timeout_s=1.0); await pipe.close()      # at shutdown: pending writes out

Every request used to make its own Redis calls, each through a per-call timeout and a
retrier, and reached the micro-batcher one by one after awaiting them: the worker spent most
of its CPU on Redis plumbing and the model saw batches of ~8. Here the calls made during one
pass of the event loop are queued; a task started by the first of them runs on the next pass
and sends them all as one pipeline: the reads as one ``MGET`` (a key asked twice is sent
once), then the writes. Every request of the tick resumes on the same reply, so they reach
the micro-batcher together.

- Reads are not retried: a failed round trip answers "not ok" to every caller (the cache
  then misses, idempotency falls back to SQLite) and counts as one failure on the breaker.
- One time budget per round trip (``timeout_s``), not one per call.
- While the breaker is open nothing is queued: callers get "not ok" at once, except the one
  call the breaker lets through as its half-open probe.
- At most ``max_inflight`` round trips are in flight; calls made meanwhile wait for the next
  one, so a slow Redis gets bigger batches rather than more connections.
- ``set_later`` is fire-and-forget (a cache fill): it rides the next round trip, never delays
  a response, and is dropped (counted) past ``max_pending_writes`` or while Redis is away.
- While no call reaches Redis, :meth:`TickPipeline.keep_probing` sends one lookup per
  interval, so the breaker (what ``falcon status`` and the metrics report) learns that Redis
  went away, or came back, without waiting for a user's request.

The decisions -- what to send, and which reply belongs to whom -- are the pure functions
:func:`plan_round_trip` and :func:`route_replies`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import RedisError

from falcon_platform.stores.breaker import CircuitBreaker

logger = logging.getLogger("falcon.stores.redis")

FAILURES = (RedisError, OSError, TimeoutError)

Kind = Literal["get", "set", "claim"]
PROBE_KEY = "falcon:probe"  # never written: the idle probe's lookup answers None
Answer = tuple[bool, bytes | None]  # (Redis answered, value)
NOT_OK: Answer = (False, None)


@dataclass(slots=True)
class Op:
    """One queued call. ``future`` is None for a fire-and-forget write."""

    kind: Kind
    key: str
    value: bytes | None = None
    px: int = 0
    future: asyncio.Future[Answer] | None = None


Command = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class RoundTrip:
    """What one pipeline sends: the commands, and the keys of its ``MGET`` (first, if any)."""

    commands: list[Command]
    read_keys: list[str]


# Cache fills of one round trip as one command: ``SET key value PX ttl`` for each KEYS[i],
# ARGV[i] (ARGV[#KEYS + 1] is the TTL). One reply instead of one per fill: measured 211-220 us
# against 531-569 us of client CPU for a round trip with 32 fills (bench/redis_round_trip.py).
# Sent with EVAL, not EVALSHA: Redis caches the compiled script by its hash itself, and a
# restarted or failed-over Redis never answers NOSCRIPT.
SET_MANY_SCRIPT = (
    "local ttl = ARGV[#KEYS + 1] "
    "for i = 1, #KEYS do redis.call('SET', KEYS[i], ARGV[i], 'PX', ttl) end "
    "return #KEYS"
)


def plan_round_trip(ops: Sequence[Op]) -> RoundTrip:
    """The commands for one round trip (pure).

    Reads become one ``MGET`` of their distinct keys, first. Then the writes, in order: each
    ``claim`` is a ``SET .. NX PX`` followed by a ``GET`` (the GET reads the winner's value
    when the key existed; any Redis >= 2.6.12); the ``set`` fills (a cache's: one TTL) are one
    ``EVAL`` of :data:`SET_MANY_SCRIPT` when there are several with the same TTL, else a
    ``SET .. PX`` each.

    >>> plan = plan_round_trip([Op("get", "a"), Op("get", "b"), Op("get", "a"),
    ...                         Op("set", "c", b"1", 500)])
    >>> plan.commands
    [('MGET', 'a', 'b'), ('SET', 'c', b'1', 'PX', 500)]
    """
    read_keys = list(dict.fromkeys(op.key for op in ops if op.kind == "get"))
    commands: list[Command] = [("MGET", *read_keys)] if read_keys else []
    fills = [op for op in ops if op.kind == "set"]
    for op in ops:
        if op.kind == "claim":
            commands.append(("SET", op.key, op.value, "NX", "PX", op.px))
            commands.append(("GET", op.key))
    if len(fills) > 1 and all(op.px == fills[0].px for op in fills):
        commands.append(
            ("EVAL", SET_MANY_SCRIPT, len(fills), *(op.key for op in fills),
             *(op.value for op in fills), fills[0].px)
        )  # fmt: skip
    else:
        commands.extend(("SET", op.key, op.value, "PX", op.px) for op in fills)
    return RoundTrip(commands, read_keys)


def probe_due(round_trips_now: int, round_trips_before: int) -> bool:
    """Send an idle probe? Only when no round trip went out during the last interval (pure).

    >>> probe_due(7, 7), probe_due(9, 7)
    (True, False)
    """
    return round_trips_now == round_trips_before


def route_replies(ops: Sequence[Op], plan: RoundTrip, replies: Sequence[Any]) -> list[Answer]:
    """Each op's answer, in the order of ``ops`` (pure).

    A ``get`` answers its key's value from the ``MGET``; a ``claim`` answers ``None`` when its
    ``SET NX`` stored the value (it won) and the stored value otherwise; a ``set`` answers
    ``None``. The ``MGET`` went first, so a ``get`` queued after a write of the same key in
    this round trip answers what that write left (as Redis would have; the fills, sent last,
    are not read back). Raises ``ValueError`` if the replies do not match the plan.
    """
    if len(replies) != len(plan.commands):
        raise ValueError(f"{len(replies)} replies for {len(plan.commands)} commands")
    values: dict[str, bytes | None] = {}
    at = 0
    if plan.read_keys:
        got = replies[0]
        if not isinstance(got, list) or len(got) != len(plan.read_keys):
            raise ValueError("the MGET reply does not match its keys")
        values = dict(zip(plan.read_keys, got, strict=True))
        at = 1
    claims = at
    claim_replies = 2 * sum(1 for op in ops if op.kind == "claim")
    fill_replies = len(replies) - at - claim_replies
    fills = sum(1 for op in ops if op.kind == "set")
    if fill_replies not in ((1 if fills > 1 else 0), fills):
        raise ValueError(f"{fill_replies} replies for {fills} cache fills")
    answers: list[Answer] = []
    written: dict[str, bytes | None] = {}  # read-your-writes inside one round trip
    for op in ops:
        if op.kind == "get":
            value = written[op.key] if op.key in written else values[op.key]
            answers.append((True, value if isinstance(value, bytes) else None))
        elif op.kind == "set":
            written[op.key] = op.value
            answers.append((True, None))
        else:
            stored, existing = replies[claims], replies[claims + 1]
            claims += 2
            won = bool(stored) or not isinstance(existing, bytes)
            written[op.key] = op.value if won else existing
            answers.append((True, None if won else existing))
    return answers


class TickPipeline:
    """The I/O shell: queues calls, sends one pipeline per loop tick, resolves the callers."""

    def __init__(
        self,
        client: Redis,
        breaker: CircuitBreaker,
        *,
        timeout_s: float,
        max_inflight: int = 4,
        max_pending_writes: int = 10_000,
    ) -> None:
        self.client = client
        self.breaker = breaker
        self.timeout_s = timeout_s
        self.max_inflight = max(1, max_inflight)
        self.max_pending_writes = max_pending_writes
        self._ops: list[Op] = []
        self._pending_writes = 0
        self._scheduled = False  # a flush task exists that has not taken the queue yet
        self._inflight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle: list[AbstractConnection] = []  # connected, no round trip on them
        self._connections: set[AbstractConnection] = set()
        self._tasks_closing: set[asyncio.Task[None]] = set()
        # Plain counters (read by describe() and the benchmark): round trips sent, calls they
        # carried, writes dropped, round trips that failed.
        self.round_trips = 0
        self.calls = 0
        self.writes_dropped = 0
        self.failures = 0
        self.probes = 0  # idle probes sent (keep_probing)

    # --- the calls -----------------------------------------------------------------------------
    def get(self, key: str) -> asyncio.Future[Answer]:
        """(True, value or None) from this tick's MGET; (False, None) if Redis did not answer."""
        return self._queue_awaited(Op("get", key))

    def claim(self, key: str, value: bytes, *, px: int) -> asyncio.Future[Answer]:
        """Store ``value`` unless ``key`` exists: (True, None) if stored, (True, existing) if not."""
        return self._queue_awaited(Op("claim", key, value, px))

    def set_later(self, key: str, value: bytes, *, px: int) -> None:
        """Queue a ``SET .. PX`` for the next round trip; never waits, never raises."""
        if not self.breaker.is_closed or self._pending_writes >= self.max_pending_writes:
            self.writes_dropped += 1
            return
        self._pending_writes += 1
        self._ops.append(Op("set", key, value, px))
        self._schedule()

    def _queue_awaited(self, op: Op) -> asyncio.Future[Answer]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Answer] = loop.create_future()
        # Closed: queue. Open: only the breaker's half-open probe goes through.
        if not self.breaker.is_closed and not self.breaker.allow():
            future.set_result(NOT_OK)
            return future
        op.future = future
        self._ops.append(op)
        self._schedule()
        return future

    # --- the round trips -----------------------------------------------------------------------
    def _schedule(self) -> None:
        if self._scheduled or self._inflight >= self.max_inflight:
            return  # the scheduled flush takes it, or the next one when a round trip ends
        self._scheduled = True
        task = asyncio.get_running_loop().create_task(self._flush(), name="falcon-redis-tick")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush(self) -> None:
        self._scheduled = False
        ops, self._ops = self._ops, []
        self._pending_writes = 0
        if not ops:
            return
        self._inflight += 1
        try:
            await self._round_trip(ops)
        finally:
            self._inflight -= 1
            if self._ops:
                self._schedule()

    async def _round_trip(self, ops: list[Op]) -> None:
        plan = plan_round_trip(ops)
        self.round_trips += 1
        self.calls += len(ops)
        try:
            async with asyncio.timeout(self.timeout_s):
                replies = await self._send(plan.commands)
            answers = route_replies(ops, plan, replies)
        except (*FAILURES, ValueError) as exc:
            self.failures += 1
            self.breaker.record_failure(exc)
            _resolve(ops, None)
            return
        except BaseException:  # cancelled (shutdown): nobody may wait forever
            _resolve(ops, None)
            raise
        self.breaker.record_success()
        _resolve(ops, answers)

    async def _send(self, commands: list[Command]) -> list[Any]:
        """Write the packed commands on an idle connection of our own, read every reply.

        The connections are redis-py's (its URL options, AUTH, TLS, packer and parser, hiredis
        when installed) but not its pool or ``Pipeline``: their checkout, retry and telemetry
        wrappers cost ~30 % of the client CPU of a round trip (bench/redis_round_trip.py), and
        the round trip's one time budget already bounds the wait (so no per-read timeout).
        A connection whose round trip failed or was cancelled is closed, never reused, and so
        are the idle ones.
        """
        conn = self._idle.pop() if self._idle else self._new_connection()
        try:
            if not conn.is_connected:
                await conn.connect()  # type: ignore[no-untyped-call]
            await conn.send_packed_command(conn.pack_commands(commands), check_health=False)
            replies = [await conn.read_response() for _ in commands]
        except BaseException:
            # Its state is unknown; and the idle ones likely share its fate (Redis restarted,
            # the network broke): reconnecting costs less than a breaker probe on a dead socket.
            for dead in [conn, *self._idle]:
                self._discard(dead)
            self._idle.clear()
            raise
        self._idle.append(conn)
        return replies

    def _new_connection(self) -> AbstractConnection:
        pool = self.client.connection_pool
        kwargs = {**pool.connection_kwargs, "socket_timeout": None}
        conn: AbstractConnection = pool.connection_class(**kwargs)
        self._connections.add(conn)
        return conn

    def _discard(self, conn: AbstractConnection) -> None:
        self._connections.discard(conn)
        task = asyncio.get_running_loop().create_task(conn.disconnect(nowait=True))
        self._tasks_closing.add(task)
        task.add_done_callback(self._tasks_closing.discard)

    async def warm(self, *, within_s: float = 3.0) -> int:
        """Open the connections round trips use (``max_inflight``) before the first request.

        A cold connection opened under load can exceed the time budget and trip the breaker
        (splitting idempotency keys between Redis and the fallback). Redis being down here is
        not an error: the breaker handles it later. Returns how many are open."""

        async def open_one() -> None:
            conn = self._new_connection()
            try:
                await conn.connect()  # type: ignore[no-untyped-call]
            except BaseException:
                self._discard(conn)
                raise
            self._idle.append(conn)

        with contextlib.suppress(*FAILURES):
            async with asyncio.timeout(within_s):
                await asyncio.gather(*(open_one() for _ in range(self.max_inflight)))
        return len(self._idle)

    async def keep_probing(self, interval_s: float) -> None:
        """Until cancelled: one lookup per ``interval_s`` while no other round trip went out.

        Requests keep the breaker current while they flow; an idle worker would otherwise say
        "ok" about a Redis that died minutes ago (and an open breaker would wait for a user's
        request to probe a Redis that came back). The lookup takes the same path as a request's:
        same budget, same breaker, and, while the breaker is open, only its half-open probe."""
        seen = self.round_trips
        while True:
            await asyncio.sleep(interval_s)
            if probe_due(self.round_trips, seen):
                self.probes += 1
                await self.get(PROBE_KEY)
            seen = self.round_trips

    # --- shutdown ------------------------------------------------------------------------------
    async def drain(self, timeout_s: float) -> None:
        """Send what is queued and wait for round trips in flight (bounded), then stop."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while self._ops or self._tasks:
                    if self._ops and not self._scheduled:
                        self._schedule()
                    await asyncio.sleep(0.001)
        for task in list(self._tasks):
            task.cancel()
        ops, self._ops = self._ops, []
        _resolve(ops, None)

    async def close(self) -> None:
        """Close the connections (after :meth:`drain`)."""
        self._idle.clear()
        connections, self._connections = list(self._connections), set()
        for conn in connections:
            with contextlib.suppress(Exception):
                await conn.disconnect()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._tasks_closing, return_exceptions=True)

    def describe(self) -> dict[str, int]:
        return {
            "round_trips": self.round_trips,
            "calls": self.calls,
            "writes_dropped": self.writes_dropped,
            "failed_round_trips": self.failures,
            "idle_probes": self.probes,
        }


def _resolve(ops: Sequence[Op], answers: Sequence[Answer] | None) -> None:
    for i, op in enumerate(ops):
        future = op.future
        if future is not None and not future.done():
            future.set_result(NOT_OK if answers is None else answers[i])
