"""The counter store shared by replicas: each operation one atomic Lua script on Redis.

It talks to Redis through `RespClient` (`limits/resp.py`): one pipelined connection, so the
calls of concurrent requests share round trips, and a batch of reads is one pipeline.

It fails closed: a Redis that refuses connections, answers errors or stays silent past the
socket timeout (0.5 s by default) makes every method raise `CounterStoreUnavailable`, within
twice that timeout at most. A dropped connection is retried once, at once (the connection may
be stale after a Redis restart); a timeout is not. Retrying is safe because every write is
idempotent by its id: a reply lost after the script ran finds the work done.

Keys, under a prefix (`modelyard:` by default; use a hash tag such as `{modelyard}:` on Redis
Cluster so that every script's keys share a slot):

    b:<budget>            hash: spent, reserved (micro-dollars); expires with the window
    r:<reservation>       hash: owner, amount, budgets (JSON list), created (µs)
    r-open, r-owner:<o>   sorted sets of open reservation ids by creation time
    r-settled:<id>        present for a while after a settlement
    rl:<key>              sorted set: request id by time logged (µs)
    rl-n:<key>            hash: request id -> amount;  rl-sum:<key>: their total
    cc:<key>              sorted set: lease id by expiry (µs)

Reading open reservations is not atomic: one settled meanwhile may be missing from the answer.
`admit_request` and `finish_request` are one script each; `settle_many` reads the reservations
of up to `SETTLE_CHUNK` settlements in one pipeline, then settles them in one script.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from modelyard.limits import lua
from modelyard.limits.errors import CounterStoreUnavailable, ReservationSettled
from modelyard.limits.memory_store import SETTLED_TTL_S
from modelyard.limits.resp import (
    Arg,
    RedisCallFailed,
    RedisConnectionError,
    RespClient,
    Script,
)
from modelyard.limits.values import (
    AdmissionResult,
    Admitted,
    BudgetLimit,
    BudgetState,
    Finished,
    LeaseRefused,
    LeaseRequest,
    OpenReservation,
    OverBudget,
    RateWindow,
    Reserved,
    Throttled,
    WindowState,
    check_admission,
    check_count,
    check_key,
    check_lease,
    check_reservation,
    check_windows,
    epoch_ms,
    from_epoch_us,
)

_UNAVAILABLE = "Budgets and rate limits cannot be checked: the counter store is unavailable."
# Settlements per `settle_many` script: a bound on how long one script holds Redis.
SETTLE_CHUNK = 100


class RedisCounterStore:
    def __init__(
        self,
        url: str,
        *,
        prefix: str = "modelyard:",
        timeout_s: float = 0.5,
        settled_ttl_s: float = SETTLED_TTL_S,
    ) -> None:
        # One pipelined connection carries every call: Redis runs commands one at a time, and
        # more connections would only split the batches.
        self._prefix = prefix
        self._timeout_s = timeout_s
        self._settled_ttl_ms = round(settled_ttl_s * 1000)
        self._reserve = Script(lua.RESERVE)
        self._settle = Script(lua.SETTLE)
        self._admit = Script(lua.ADMIT)
        self._adjust = Script(lua.ADJUST)
        self._enter = Script(lua.ENTER)
        self._leave = Script(lua.LEAVE)
        self._settle_many = Script(lua.SETTLE_MANY)
        self._admit_request = Script(lua.ADMIT_REQUEST)
        self._finish_request = Script(lua.FINISH_REQUEST)
        scripts = [
            self._reserve, self._settle, self._admit, self._adjust, self._enter, self._leave,
            self._settle_many, self._admit_request, self._finish_request,
        ]  # fmt: skip
        self._client = RespClient(url, timeout_s=timeout_s, stall_s=2 * timeout_s, scripts=scripts)

    async def _ask(self, ask: Callable[..., Awaitable[Any]], until: float | None = None) -> Any:
        """`ask(deadline=...)` within the socket timeout, and by `until` (loop time) when given;
        a dropped connection is asked again once, at once. Without `until`, the second try
        still ends within twice the timeout of the first's start, as the first failed in time."""
        try:
            try:
                return await ask(deadline=self._step_deadline(until))
            except RedisConnectionError:
                return await ask(deadline=self._step_deadline(until))
        except RedisCallFailed as error:
            raise CounterStoreUnavailable(_UNAVAILABLE) from error

    async def _script(
        self, script: Script, keys: Sequence[Arg], args: Sequence[Arg], until: float | None = None
    ) -> Any:
        return await self._ask(functools.partial(self._client.evalsha, script, keys, args), until)

    async def _call(self, *command: Arg, until: float | None = None) -> Any:
        return await self._ask(functools.partial(self._client.call, *command), until)

    async def _call_many(self, commands: Sequence[tuple[Arg, ...]], until: float) -> Any:
        return await self._ask(functools.partial(self._client.call_many, commands), until)

    def _step_deadline(self, until: float | None) -> float | None:
        if until is None:
            return None  # the client's own: the timeout from now
        return min(asyncio.get_running_loop().time() + self._timeout_s, until)

    def _until(self) -> float:
        """The deadline of an operation of several calls: twice the timeout from now."""
        return asyncio.get_running_loop().time() + 2 * self._timeout_s

    def _key(self, kind: str, name: str = "") -> str:
        return f"{self._prefix}{kind}:{name}" if name else f"{self._prefix}{kind}"

    def _reservation_keys(self, reservation_id: str, owner: str) -> list[str]:
        return [
            self._key("r", reservation_id),
            self._key("r-settled", reservation_id),
            self._key("r-open"),
            self._key("r-owner", owner),
        ]

    def _log_keys(self, key: str) -> list[str]:
        return [self._key("rl", key), self._key("rl-n", key), self._key("rl-sum", key)]

    async def reserve(
        self,
        reservation_id: str,
        budgets: Sequence[BudgetLimit],
        amount_micros: int,
        owner: str,
    ) -> Reserved | OverBudget:
        check_reservation(reservation_id, owner, amount_micros, budgets)
        keys = self._reservation_keys(reservation_id, owner)
        keys += [self._key("b", budget.key) for budget in budgets]
        args: list[str | int] = [
            reservation_id,
            owner,
            amount_micros,
            json.dumps([budget.key for budget in budgets]),
            *_budget_args(budgets),
        ]
        reply = await self._script(self._reserve, keys, args)
        status = int(reply[0])
        if status == 2:
            raise ReservationSettled(reservation_id)
        if status == 3:
            budget = budgets[int(reply[1]) - 1]
            return OverBudget(budget.key, budget.limit_micros, int(reply[2]), amount_micros)
        return Reserved(reservation_id, created=status == 0)

    async def settle(self, reservation_id: str, actual_micros: int) -> bool:
        check_count("actual_micros", actual_micros)
        # The script must name the budgets it touches, so read them first; the script checks
        # the record is still the one read. It cannot change while open, so one pass is the norm.
        for _ in range(3):
            until = self._until()
            owner, budgets = await self._call(
                "HMGET", self._key("r", reservation_id), "owner", "budgets", until=until
            )
            if not isinstance(owner, str) or not isinstance(budgets, str):
                return False
            keys = self._reservation_keys(reservation_id, owner)
            keys += [self._key("b", key) for key in json.loads(budgets)]
            args: list[str | int] = [
                reservation_id,
                actual_micros,
                owner,
                budgets,
                self._settled_ttl_ms,
            ]
            done = int(await self._script(self._settle, keys, args, until))
            if done >= 0:
                return done == 1
        raise CounterStoreUnavailable(_UNAVAILABLE)

    async def open_reservations(self, owner: str | None = None) -> list[OpenReservation]:
        index = self._key("r-open") if owner is None else self._key("r-owner", owner)
        fields = ("owner", "amount", "budgets", "created")
        until = self._until()
        members = await self._call("ZRANGE", index, 0, -1, until=until)
        ids = [str(member) for member in members]
        reads = [("HMGET", self._key("r", reservation_id), *fields) for reservation_id in ids]
        records: list[list[str | None]] = await self._call_many(reads, until)
        found = []
        for reservation_id, (who, amount, budgets, created) in zip(ids, records, strict=True):
            if who is None or amount is None or budgets is None or created is None:
                continue  # settled since the index was read
            found.append(
                OpenReservation(
                    reservation_id,
                    who,
                    int(amount),
                    tuple(json.loads(budgets)),
                    from_epoch_us(int(created)),
                )
            )
        return sorted(found, key=lambda r: (r.created_at, r.reservation_id))

    async def budget_state(self, key: str) -> BudgetState:
        spent, reserved = await self._call("HMGET", self._key("b", key), "spent", "reserved")
        return BudgetState(int(spent or 0), int(reserved or 0))

    async def admit(self, request_id: str, windows: Sequence[RateWindow]) -> Admitted | Throttled:
        check_key("request_id", request_id)
        check_windows(windows)
        keys: list[str] = []
        args: list[str | int] = [request_id]
        for window in windows:
            keys += self._log_keys(window.key)
            args += [window.limit, window.window_us, window.amount]
        reply: list[Any] = await self._script(self._admit, keys, args)
        if int(reply[0]) == 0:
            return _throttled(windows, reply[1:])
        return _admitted(windows, reply[1:])

    async def adjust(self, request_id: str, key: str, actual_amount: int) -> bool:
        check_count("actual_amount", actual_amount)
        done = await self._script(self._adjust, self._log_keys(key), [request_id, actual_amount])
        return int(done) == 1

    async def enter(self, key: str, cap: int, lease_id: str, ttl_s: float) -> bool:
        check_lease(lease_id, cap, ttl_s)
        held = await self._script(
            self._enter, [self._key("cc", key)], [lease_id, cap, round(ttl_s * 1_000_000)]
        )
        return int(held) == 1

    async def leave(self, key: str, lease_id: str) -> bool:
        released = await self._script(self._leave, [self._key("cc", key)], [lease_id])
        return int(released) == 1

    async def admit_request(
        self,
        request_id: str,
        *,
        lease: LeaseRequest | None,
        windows: Sequence[RateWindow],
        budgets: Sequence[BudgetLimit],
        amount_micros: int,
        owner: str,
    ) -> AdmissionResult:
        check_admission(request_id, owner, amount_micros, windows, budgets)
        keys = self._reservation_keys(request_id, owner)
        args: list[str | int] = [
            request_id,
            owner,
            amount_micros,
            json.dumps([budget.key for budget in budgets]),
            "" if lease is None else lease.cap,
            0 if lease is None else lease.ttl_us,
            len(windows),
        ]
        if lease is not None:
            keys.append(self._key("cc", lease.key))
        for window in windows:
            keys += self._log_keys(window.key)
            args += [window.limit, window.window_us, window.amount]
        keys += [self._key("b", budget.key) for budget in budgets]
        args += _budget_args(budgets)
        reply: list[Any] = await self._script(self._admit_request, keys, args)
        status = int(reply[0])
        if status == 2:
            raise ReservationSettled(request_id)
        if status == 3:
            assert lease is not None  # the script refuses no lease it was not given
            return LeaseRefused(lease.key, lease.cap)
        if status == 4:
            return _throttled(windows, reply[1:])
        if status == 5:
            budget = budgets[int(reply[1]) - 1]
            return OverBudget(budget.key, budget.limit_micros, int(reply[2]), amount_micros)
        admitted = _admitted(windows, reply[2:])
        return Admitted(admitted.windows, from_epoch_us(int(reply[1])))

    async def finish_request(
        self,
        request_id: str,
        *,
        lease_key: str | None,
        tpm_adjustments: Sequence[tuple[str, int]],
    ) -> Finished:
        keys: list[str] = [] if lease_key is None else [self._key("cc", lease_key)]
        args: list[str | int] = [request_id, 0 if lease_key is None else 1]
        for key, actual_amount in tpm_adjustments:
            check_count("actual_amount", actual_amount)
            keys += self._log_keys(key)
            args.append(actual_amount)
        if not keys:
            return Finished((), left=False)
        reply: list[Any] = await self._script(self._finish_request, keys, args)
        return Finished(tuple(int(done) == 1 for done in reply[1:]), left=int(reply[0]) == 1)

    async def settle_many(self, settlements: Sequence[tuple[str, int]]) -> list[bool]:
        for _, actual_micros in settlements:
            check_count("actual_micros", actual_micros)
        settled: list[bool] = []
        for start in range(0, len(settlements), SETTLE_CHUNK):
            settled += await self._settle_chunk(settlements[start : start + SETTLE_CHUNK])
        return settled

    async def _settle_chunk(self, settlements: Sequence[tuple[str, int]]) -> list[bool]:
        # As `settle`: read each record's owner and budgets to name the keys, and let the
        # script check each record is still the one read.
        settled = [False] * len(settlements)
        sent: list[int] = []
        keys: list[str] = []
        args: list[str | int] = [self._settled_ttl_ms]
        until = self._until()
        reads = [
            ("HMGET", self._key("r", reservation_id), "owner", "budgets")
            for reservation_id, _ in settlements
        ]
        records: list[list[str | None]] = await self._call_many(reads, until)
        for index, ((reservation_id, actual), (owner, budgets)) in enumerate(
            zip(settlements, records, strict=True)
        ):
            if owner is None or budgets is None:
                continue  # not open
            budget_keys = json.loads(budgets)
            keys += self._reservation_keys(reservation_id, owner)
            keys += [self._key("b", key) for key in budget_keys]
            args += [reservation_id, actual, owner, budgets, len(budget_keys)]
            sent.append(index)
        replies: list[Any] = (
            await self._script(self._settle_many, keys, args, until) if sent else []
        )
        for index, reply in zip(sent, replies, strict=True):
            if int(reply) == -1:  # the record changed since it was read: as `settle` does
                settled[index] = await self.settle(*settlements[index])
            else:
                settled[index] = int(reply) == 1
        return settled

    async def aclose(self) -> None:
        await self._client.aclose()


def _budget_args(budgets: Sequence[BudgetLimit]) -> list[str | int]:
    args: list[str | int] = []
    for budget in budgets:
        expires = "" if budget.expires_at is None else epoch_ms(budget.expires_at)
        args += [budget.limit_micros, expires]
    return args


def _throttled(windows: Sequence[RateWindow], reply: list[Any]) -> Throttled:
    """From the script's [window index, remaining, retry after (µs; -1 for never)]."""
    window = windows[int(reply[0]) - 1]
    retry_us = int(reply[2])
    return Throttled(
        window.key,
        window.limit,
        int(reply[1]),
        window.amount,
        None if retry_us < 0 else retry_us / 1_000_000,
    )


def _admitted(windows: Sequence[RateWindow], reply: list[Any]) -> Admitted:
    """From the script's [remaining, reset (µs)] per window."""
    return Admitted(
        tuple(
            WindowState(window.key, window.limit, int(remaining), int(reset_us) / 1_000_000)
            for window, remaining, reset_us in zip(windows, reply[0::2], reply[1::2], strict=True)
        )
    )
