"""The RESP client against real redis-server processes: pipelined calls each get their own
reply, error replies stay with their call, scripts survive SCRIPT FLUSH and restarts, a lost or
silent connection fails what waits on it and is replaced, a late reply is dropped, and AUTH,
SELECT and TLS work on connecting."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote
from uuid import uuid4

import pytest
from tests.limits.conftest import RedisServer
from tests.support.certificates import self_signed_certificate
from tests.support.ports import free_port

from modelyard.limits.errors import CounterStoreUnavailable
from modelyard.limits.redis_store import RedisCounterStore
from modelyard.limits.resp import (
    RedisCallFailed,
    RedisConnectionError,
    RedisTimeout,
    RespClient,
    RespError,
    Script,
    parse_redis_url,
)
from modelyard.limits.values import Admitted, BudgetLimit, BudgetState, RateWindow

pytestmark = pytest.mark.anyio

ECHO_KEYS_AND_ARGS = Script("return {KEYS[1], ARGV[1], tonumber(ARGV[2]) + 1}")


@pytest.fixture()
async def client(redis_server: RedisServer, anyio_backend: str) -> AsyncIterator[RespClient]:
    resp = RespClient(redis_server.url)
    yield resp
    await resp.aclose()


async def test_concurrent_calls_share_one_connection_and_each_gets_its_own_reply(
    client: RespClient,
) -> None:
    prefix = f"t:{uuid4().hex}:"

    async def round_trip(n: int) -> tuple[object, object, object]:
        set_reply = await client.call("SET", f"{prefix}{n}", f"value-{n}")
        echoed = await client.call("ECHO", f"echo-{n}")
        return set_reply, echoed, await client.call("GET", f"{prefix}{n}")

    answers = await asyncio.gather(*(round_trip(n) for n in range(500)))
    assert answers == [("OK", f"echo-{n}", f"value-{n}") for n in range(500)]
    ids = await asyncio.gather(*(client.call("CLIENT", "ID") for _ in range(50)))
    assert len(set(ids)) == 1 and isinstance(ids[0], int)


async def test_replies_keep_their_types(client: RespClient) -> None:
    key = f"t:{uuid4().hex}"
    assert await client.call("HSET", key, "a", "1", "b", "ünïcode") == 2
    assert await client.call("HMGET", key, "a", "missing", "b") == ["1", None, "ünïcode"]
    assert await client.call("HINCRBY", key, "a", -5) == -4
    assert await client.call("GET", f"{key}:none") is None
    assert await client.call_many([]) == []
    await client.call("SET", f"{key}:bytes", b"\xff\xfe")
    with pytest.raises(RedisCallFailed, match="not UTF-8"):
        await client.call("GET", f"{key}:bytes")
    assert await client.call("ECHO", "in step") == "in step"


async def test_an_error_reply_fails_its_own_call_alone(client: RespClient) -> None:
    key = f"t:{uuid4().hex}"
    await client.call("SET", key, "not a number")
    calls = [
        client.call("ECHO", "before"),
        client.call("INCR", key),
        client.call("ECHO", "after"),
    ]
    before, failed, after = await asyncio.gather(*calls, return_exceptions=True)
    assert (before, after) == ("before", "after")
    assert isinstance(failed, RespError)
    assert failed.message == "ERR value is not an integer or out of range"

    with pytest.raises(RespError, match="not an integer"):
        await client.call_many([("ECHO", "x"), ("INCR", key), ("ECHO", "y")])
    assert await client.call("ECHO", "still in step") == "still in step"


async def test_a_script_runs_by_sha_and_is_sent_again_after_script_flush(
    client: RespClient,
) -> None:
    script = ECHO_KEYS_AND_ARGS
    assert await client.evalsha(script, ["k"], ["v", 41]) == ["k", "v", 42]
    assert await client.call("SCRIPT", "EXISTS", script.sha) == [1]
    await client.call("SCRIPT", "FLUSH")
    assert await client.call("SCRIPT", "EXISTS", script.sha) == [0]
    replies = await asyncio.gather(*(client.evalsha(script, ["k"], [n, n]) for n in range(20)))
    assert replies == [["k", str(n), n + 1] for n in range(20)]
    assert await client.call("SCRIPT", "EXISTS", script.sha) == [1]


async def test_a_script_error_is_a_resp_error_not_a_reload(client: RespClient) -> None:
    failing = Script(f"return redis.error_reply('boom {uuid4().hex}')")
    for _ in range(2):  # sent whole, then by sha: the error is the script's both times
        with pytest.raises(RespError, match="boom"):
            await client.evalsha(failing, ["k"], [])
    assert await client.call("SCRIPT", "EXISTS", failing.sha) == [1]


async def test_after_a_restart_the_next_call_reconnects_and_reloads_the_script(
    own_redis_server: RedisServer,
) -> None:
    client = RespClient(own_redis_server.url)
    try:
        assert await client.evalsha(ECHO_KEYS_AND_ARGS, ["a"], ["b", 1]) == ["a", "b", 2]
        own_redis_server.stop()
        with pytest.raises(RedisConnectionError):
            await client.call("PING")
        own_redis_server.start()
        assert await client.evalsha(ECHO_KEYS_AND_ARGS, ["a"], ["b", 2]) == ["a", "b", 3]
    finally:
        await client.aclose()


async def test_scripts_given_are_loaded_on_every_connection(
    own_redis_server: RedisServer,
) -> None:
    script = Script(f"return '{uuid4().hex}'")
    client = RespClient(own_redis_server.url, scripts=[script, ECHO_KEYS_AND_ARGS])
    try:
        await client.call("PING")
        both = [script.sha, ECHO_KEYS_AND_ARGS.sha]
        assert await client.call("SCRIPT", "EXISTS", *both) == [1, 1]
        own_redis_server.stop()
        with pytest.raises(RedisConnectionError):
            await client.call("PING")
        own_redis_server.start()
        await client.call("PING")
        assert await client.call("SCRIPT", "EXISTS", *both) == [1, 1]
    finally:
        await client.aclose()


async def test_a_killed_connection_fails_waiting_calls_and_the_next_call_reconnects(
    client: RespClient, redis_server: RedisServer
) -> None:
    admin = RespClient(redis_server.url)
    try:
        first_id = await client.call("CLIENT", "ID")
        blocked = [
            asyncio.ensure_future(client.call("BLPOP", f"t:{uuid4().hex}", 5, deadline=far()))
            for _ in range(3)
        ]
        await asyncio.sleep(0.05)
        assert await admin.call("CLIENT", "KILL", "ID", first_id) == 1
        async with asyncio.timeout(1):
            outcomes = await asyncio.gather(*blocked, return_exceptions=True)
        assert all(isinstance(outcome, RedisConnectionError) for outcome in outcomes)
        second_id = await client.call("CLIENT", "ID")
        assert second_id != first_id
    finally:
        await admin.aclose()


def far() -> float:
    return asyncio.get_running_loop().time() + 10


async def test_a_late_reply_is_dropped_and_later_calls_get_their_own(
    own_redis_server: RedisServer,
) -> None:
    client = RespClient(own_redis_server.url, timeout_s=0.2, stall_s=30)
    try:
        connection_id = await client.call("CLIENT", "ID")
        own_redis_server.pause()
        try:
            with pytest.raises(RedisTimeout):
                await client.call("ECHO", "too late")
            cancelled = asyncio.ensure_future(client.call("ECHO", "cancelled", deadline=far()))
            await asyncio.sleep(0.05)
            cancelled.cancel()
        finally:
            own_redis_server.resume()
        assert await client.call("ECHO", "on time") == "on time"
        assert await client.call_many([("ECHO", "a"), ("ECHO", "b")]) == ["a", "b"]
        assert await client.call("CLIENT", "ID") == connection_id  # the same connection
    finally:
        await client.aclose()


async def test_a_connection_silent_for_stall_s_is_replaced(own_redis_server: RedisServer) -> None:
    client = RespClient(own_redis_server.url, timeout_s=0.3, stall_s=0.2)
    try:
        connection_id = await client.call("CLIENT", "ID")
        own_redis_server.pause()
        try:
            waiting = asyncio.ensure_future(client.call("ECHO", "waits", deadline=far()))
            with pytest.raises(RedisTimeout):
                await client.call("ECHO", "times out")
            # The silence outlasted stall_s: the connection is closed, failing what waited.
            with pytest.raises(RedisConnectionError):
                await waiting
        finally:
            own_redis_server.resume()
        assert await client.call("ECHO", "fresh") == "fresh"
        assert await client.call("CLIENT", "ID") != connection_id
    finally:
        await client.aclose()


async def test_a_connect_begun_while_redis_hung_does_not_fail_calls_after_it_recovers(
    own_redis_server: RedisServer,
) -> None:
    admin = RespClient(own_redis_server.url)
    await admin.call("CONFIG", "SET", "requirepass", "secret")  # so connecting waits on AUTH
    client = RespClient(
        f"redis://:secret@127.0.0.1:{own_redis_server.port}", timeout_s=0.3, stall_s=0.2
    )
    try:
        await client.call("PING")
        own_redis_server.pause()
        try:
            with pytest.raises(RedisTimeout):
                await client.call("ECHO", "closes the silent connection")
            with pytest.raises(RedisTimeout):
                await client.call("ECHO", "begins a connect that cannot finish in time")
        finally:
            own_redis_server.resume()
        assert await client.call("ECHO", "recovered") == "recovered"
    finally:
        await client.aclose()
        await admin.aclose()


async def test_aclose_fails_waiting_calls_and_later_ones(redis_server: RedisServer) -> None:
    client = RespClient(redis_server.url)
    blocked = asyncio.ensure_future(client.call("BLPOP", f"t:{uuid4().hex}", 5, deadline=far()))
    await asyncio.sleep(0.05)
    await client.aclose()
    with pytest.raises(RedisConnectionError):
        await blocked
    with pytest.raises(RedisConnectionError):
        await client.call("PING")


async def test_nothing_listening_is_a_connection_error() -> None:
    client = RespClient(f"redis://127.0.0.1:{free_port()}")
    with pytest.raises(RedisConnectionError):
        await client.call("PING")
    await client.aclose()


async def test_auth_with_a_password_or_a_user_and_select_on_connecting(
    own_redis_server: RedisServer,
) -> None:
    password = "p@ss:w/rd %"  # characters a URL must escape
    admin = RespClient(own_redis_server.url)
    await admin.call("CONFIG", "SET", "requirepass", password)
    await admin.call("ACL", "SETUSER", "alice", "on", ">alice-secret", "~*", "+@all")
    base = f"127.0.0.1:{own_redis_server.port}"
    with_password = RespClient(f"redis://:{quote(password, safe='')}@{base}/3")
    as_alice = RespClient(f"redis://alice:alice-secret@{base}")
    wrong = RespClient(f"redis://:not-it@{base}")
    anonymous = RespClient(f"redis://{base}")
    try:
        assert await with_password.call("ACL", "WHOAMI") == "default"
        assert "db=3" in await with_password.call("CLIENT", "INFO")
        assert await as_alice.call("ACL", "WHOAMI") == "alice"
        with pytest.raises(RespError, match="WRONGPASS") as refused:
            await wrong.call("PING")
        assert "not-it" not in str(refused.value)
        with pytest.raises(RespError, match="NOAUTH"):
            await anonymous.call("PING")
    finally:
        for client in (admin, with_password, as_alice, wrong, anonymous):
            await client.aclose()


async def test_rediss_verifies_the_server_against_the_given_trust(
    own_redis_server: RedisServer, tmp_path: Path
) -> None:
    cert, key = self_signed_certificate(tmp_path)
    tls_port = free_port()
    admin = RespClient(own_redis_server.url)
    await admin.call(
        "CONFIG", "SET", "tls-cert-file", str(cert), "tls-key-file", str(key),
        "tls-auth-clients", "no", "tls-port", tls_port,
    )  # fmt: skip
    trusting = ssl.create_default_context(cafile=str(cert))
    client = RespClient(f"rediss://127.0.0.1:{tls_port}", ssl_context=trusting)
    stranger = RespClient(f"rediss://127.0.0.1:{tls_port}")  # the system's trust store
    try:
        assert await client.call("ECHO", "over tls") == "over tls"
        with pytest.raises(RedisConnectionError):
            await stranger.call("PING")
    finally:
        for resp in (admin, client, stranger):
            await resp.aclose()


def test_the_url_gives_host_port_db_and_unescaped_credentials() -> None:
    address = parse_redis_url("rediss://bob:p%40ss@cache.internal:6380/4")
    assert (address.host, address.port, address.db, address.tls) == (
        "cache.internal",
        6380,
        4,
        True,
    )
    assert (address.username, address.password) == ("bob", "p@ss")
    plain = parse_redis_url("redis://localhost")
    assert (plain.port, plain.db, plain.username, plain.password) == (6379, 0, None, None)
    assert parse_redis_url("redis://:secret@h").password == "secret"
    for refused in (
        "unix:///tmp/redis.sock",
        "redis://h:6379/0?socket_timeout=1",
        "redis://h/zero",
        "redis://bob@h",
        "http://h",
    ):
        with pytest.raises(ValueError):
            parse_redis_url(refused)


async def test_the_store_recovers_after_a_restart_and_fails_closed_while_down(
    own_redis_server: RedisServer,
) -> None:
    store = RedisCounterStore(own_redis_server.url)
    budgets = [BudgetLimit("b", 1000)]
    windows = [RateWindow("rpm", 10, 1)]

    async def admit(request_id: str) -> object:
        return await store.admit_request(
            request_id, lease=None, windows=windows, budgets=budgets, amount_micros=10, owner="a"
        )

    try:
        assert isinstance(await admit("q1"), Admitted)
        own_redis_server.stop()
        with pytest.raises(CounterStoreUnavailable):
            await admit("q2")
        own_redis_server.start()  # empty, scripts flushed
        assert isinstance(await admit("q3"), Admitted)
        assert await store.budget_state("b") == BudgetState(0, 10)
        assert await store.settle_many([("q3", 7), ("q1", 5)]) == [True, False]
        assert await store.budget_state("b") == BudgetState(7, 0)
    finally:
        await store.aclose()
