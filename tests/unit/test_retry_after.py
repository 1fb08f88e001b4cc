"""The retry hint an upstream's 429 or 503 becomes: read from `retry-after-ms` or `Retry-After`
(seconds or an HTTP date), capped, and never an exception whatever the header holds."""

from __future__ import annotations

import email.utils
import time

import pytest

from modelyard.providers.upstream_errors import MAX_RETRY_AFTER_S, retry_after_s


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, 1),
        ({"retry-after": "7"}, 7),
        ({"retry-after": "2.2"}, 3),
        ({"retry-after-ms": "300"}, 1),
        ({"retry-after-ms": "4500", "retry-after": "60"}, 5),
        ({"retry-after": "0"}, 1),
        ({"retry-after": "-5"}, 1),
        ({"retry-after": "100000"}, MAX_RETRY_AFTER_S),
    ],
)
def test_retry_hints_are_read_in_seconds_and_capped(headers: dict[str, str], expected: int) -> None:
    assert retry_after_s(headers) == expected


def test_an_http_date_is_read_as_the_seconds_until_it() -> None:
    in_ten = email.utils.formatdate(time.time() + 10, usegmt=True)
    assert 9 <= retry_after_s({"retry-after": in_ten}) <= 11


@pytest.mark.parametrize("value", ["garbage", "nan", "inf", "", "Thu, 99 Foo 2026 00:00:00 GMT"])
def test_a_malformed_hint_gives_the_default_and_never_raises(value: str) -> None:
    assert retry_after_s({"retry-after": value}) == 1
    assert retry_after_s({"retry-after-ms": value}) == 1
