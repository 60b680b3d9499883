"""Redis keys: a user's build state and events live in one Cluster slot (one round trip)."""

import pytest
from redis.crc import key_slot

from recsys.store.keys import Keys


@pytest.mark.parametrize(
    "user", ["42", "alice@example.com", "ünïcødé", "a:b:c", "x" * 256, "}x", "{", "a{b}c", "{}"]
)
def test_user_keys_share_a_cluster_slot(user: str) -> None:
    keys = Keys("recsys")
    state = keys.user_state("20261125T000000Z-abc123", user).encode()
    events = keys.events(user).encode()
    assert key_slot(state) == key_slot(events)


def test_users_spread_over_slots() -> None:
    keys = Keys("recsys")
    slots = {key_slot(keys.user_state("v1", str(u)).encode()) for u in range(2000)}
    assert len(slots) > 1500  # 16384 slots: 2000 users land almost all apart


def test_ids_with_braces_keep_distinct_keys() -> None:
    keys = Keys("recsys")
    ids = ["a{b}c", "a{b}d", "{b}", "b", "#x", "{#x}"]
    assert len({keys.user_state("v", u) for u in ids}) == len(ids)
    assert len({keys.events(u) for u in ids}) == len(ids)


def test_builds_are_separate_namespaces() -> None:
    keys = Keys("recsys")
    assert keys.user_state("v1", "7").startswith("recsys:b:v1:")
    assert not keys.user_state("v2", "7").startswith("recsys:b:v1:")
    assert keys.build_pattern("v1") == "recsys:b:v1:*"
