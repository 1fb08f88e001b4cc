"""Counter names are written and read back by one module, so a format change cannot break the
readers (rate-limit headers, budget refusals, crash reconciliation) without breaking this."""

from __future__ import annotations

from modelyard.limits.keys import BudgetKey, RateKey, is_rebuild, lease_key, rebuild_id


def test_names_read_back_as_what_they_were_written_from() -> None:
    rate = RateKey("tpm", "project", "team-a")
    assert str(rate) == "tpm:project:team-a" and RateKey.parse(str(rate)) == rate
    budget = BudgetKey("key", "k1", "day", "2026-12-05")
    assert str(budget) == "budget:key:k1:day:2026-12-05"
    assert BudgetKey.parse(str(budget)) == budget


def test_other_names_are_not_mistaken_for_them() -> None:
    assert RateKey.parse(lease_key("k1")) is None
    assert RateKey.parse("rpm:") is None
    assert BudgetKey.parse(str(RateKey("rpm", "key", "k1"))) is None
    assert is_rebuild(rebuild_id(str(BudgetKey("key", "k1", "day", "x"))))
    assert not is_rebuild("0123abcd")
