import stat
from pathlib import Path

from modelyard.auth.admin_key import DIGEST_FILE, load_or_create_admin_key
from modelyard.auth.keys import digests_match


def test_first_start_generates_a_key_and_stores_only_its_digest(tmp_path: Path) -> None:
    created = load_or_create_admin_key(tmp_path, configured=None)
    assert created.new_key is not None and created.new_key.startswith("myd-admin-")
    assert len(created.new_key) >= len("myd-admin-") + 43  # 256 random bits
    stored = (tmp_path / DIGEST_FILE).read_text()
    assert created.new_key not in stored
    assert digests_match(created.new_key, stored.strip())
    assert stat.S_IMODE((tmp_path / DIGEST_FILE).stat().st_mode) == 0o600


def test_later_starts_read_the_digest_and_never_show_a_key(tmp_path: Path) -> None:
    first = load_or_create_admin_key(tmp_path, configured=None)
    second = load_or_create_admin_key(tmp_path, configured=None)
    assert second.new_key is None
    assert second.digest == first.digest


def test_a_configured_key_wins_and_nothing_is_written(tmp_path: Path) -> None:
    admin = load_or_create_admin_key(tmp_path, configured="my-own-key")
    assert admin.new_key is None
    assert digests_match("my-own-key", admin.digest)
    assert not (tmp_path / DIGEST_FILE).exists()
