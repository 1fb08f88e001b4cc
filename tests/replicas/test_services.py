"""The throwaway servers the tests start: loopback only, never as root, isolated databases."""

from __future__ import annotations

import os

import psycopg
import redis

from tests.support.services import PostgresServer, RedisServer


def test_postgres_databases_are_separate_and_the_server_never_runs_as_root(
    postgres_server: PostgresServer,
) -> None:
    first = postgres_server.create_database("services_first")
    second = postgres_server.create_database("services_second")
    assert first != second and first.startswith("postgresql+psycopg://")
    with psycopg.connect(postgres_server.conninfo("services_first")) as connection:
        connection.execute("CREATE TABLE only_here (id int)")
        listen = connection.execute("SHOW listen_addresses").fetchone()
        fsync = connection.execute("SHOW fsync").fetchone()
    assert listen == ("127.0.0.1",) and fsync == ("off",)
    with psycopg.connect(postgres_server.conninfo("services_second")) as connection:
        assert connection.execute("SELECT to_regclass('only_here')").fetchone() == (None,)
    assert os.stat(postgres_server.data_dir).st_uid != 0


def test_redis_keeps_nothing_on_disk(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url())
    try:
        client.set("services:probe", "1")
        assert client.get("services:probe") == b"1"
        assert client.config_get("save") == {"save": ""}
        assert client.config_get("appendonly") == {"appendonly": "no"}
    finally:
        client.close()
