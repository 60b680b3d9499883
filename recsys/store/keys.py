"""Redis key names. The user id sits in a ``{hash tag}`` so that a user's candidates and events
land in one Redis Cluster slot: one pipelined round trip per request even on a cluster."""

import hashlib
from dataclasses import dataclass


def _tagged(user_id: str) -> str:
    """``{user_id}``; an id with braces (Redis' own hash-tag characters) gets a tag derived from
    it, and the raw id after it, so keys stay unique and both of a user's keys share a slot."""
    if "{" not in user_id and "}" not in user_id:
        return f"{{{user_id}}}"
    digest = hashlib.blake2b(user_id.encode(), digest_size=8).hexdigest()
    return f"{{#{digest}}}:{user_id}"


@dataclass(frozen=True)
class Keys:
    prefix: str = "recsys"

    @property
    def current(self) -> str:
        """Holds the version of the build that serving should use; written last by a build."""
        return f"{self.prefix}:current"

    @property
    def builds(self) -> str:
        """Sorted set of published builds, scored by publish time, for clean-up."""
        return f"{self.prefix}:builds"

    def user_state(self, build_version: str, user_id: str) -> str:
        return f"{self.prefix}:b:{build_version}:u:{_tagged(user_id)}"

    def build_pattern(self, build_version: str) -> str:
        return f"{self.prefix}:b:{build_version}:*"

    def events(self, user_id: str) -> str:
        """Real-time events of a user (build-independent, capped list, newest first)."""
        return f"{self.prefix}:ev:{_tagged(user_id)}"

    @property
    def events_pattern(self) -> str:
        """SCAN pattern of every user's event list."""
        return f"{self.prefix}:ev:*"
