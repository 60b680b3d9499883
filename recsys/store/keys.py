"""Redis key names. The user id sits in a ``{hash tag}`` so that a user's candidates and events
land in one Redis Cluster slot: one pipelined round trip per request even on a cluster."""

import hashlib
import zlib
from dataclasses import dataclass

from recsys.experiment import DEFAULT_BUILD_NAME


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

    def pointer(self, name: str = DEFAULT_BUILD_NAME) -> str:
        """The newest build of a build line (``recsys build --name``): the champion's is
        ``current``, as before lines had names, so every reader of ``current`` still works."""
        return self.current if name == DEFAULT_BUILD_NAME else f"{self.prefix}:current:{name}"

    @property
    def build_names(self) -> str:
        """Hash build version -> the name of its line; a version missing is a champion build."""
        return f"{self.prefix}:build-names"

    def impressions(self, shard: int) -> str:
        """Stream of answers shown (``recsys.store.feedback_log``), one of ``log.shards``; the
        hash tag differs per shard, so on a Redis Cluster the shards spread over slots."""
        return f"{self.prefix}:imp:{{imp{shard}}}"

    def event_log(self, shard: int) -> str:
        """Stream of events posted, sharded like the impressions (tags of their own)."""
        return f"{self.prefix}:evlog:{{ev{shard}}}"

    @property
    def builds(self) -> str:
        """Sorted set of published builds, scored by publish time, for clean-up."""
        return f"{self.prefix}:builds"

    @property
    def building(self) -> str:
        """Hash of builds being written: version -> in-progress marker (host, pid, expiry),
        refreshed by a heartbeat; garbage collection leaves live ones alone."""
        return f"{self.prefix}:building"

    @property
    def serving(self) -> str:
        """Sorted set of "<worker> <version>" members scored by expiry: the builds that serving
        workers hold or are loading. A build in it is not removed."""
        return f"{self.prefix}:serving"

    def user_state(self, build_version: str, user_id: str) -> str:
        return f"{self.prefix}:b:{build_version}:u:{_tagged(user_id)}"

    def build_ready(self, build_version: str) -> str:
        """Set when a build is published, deleted first when it is removed: /readyz checks it."""
        return f"{self.prefix}:b:{build_version}:ready"

    def build_pattern(self, build_version: str) -> str:
        return f"{self.prefix}:b:{build_version}:*"

    @property
    def all_builds_pattern(self) -> str:
        """SCAN pattern of every build's keys (garbage collection)."""
        return f"{self.prefix}:b:*"

    def version_of_key(self, key: str) -> str | None:
        """The build version in a build key's name (unchecked text), None for other keys."""
        head = f"{self.prefix}:b:"
        if not key.startswith(head):
            return None
        version, sep, _ = key[len(head) :].partition(":")
        return version if sep else None

    def live_drift(self, build_version: str) -> str:
        """Hash of live requests' feature counts in the build's drift bins, summed over every
        worker (``recsys.store.drift_counts``). Outside ``b:<build>:`` on purpose: it is
        monitoring, with a TTL of its own, and a late flush must not look like a killed build's
        keys to garbage collection."""
        return f"{self.prefix}:drift:{build_version}"

    def events(self, user_id: str) -> str:
        """Real-time events of a user (build-independent, capped list, newest first)."""
        return f"{self.prefix}:ev:{_tagged(user_id)}"

    @staticmethod
    def shard_of(user_id: str, shards: int) -> int:
        """The log shard of a user: CRC-32 of the id, so every worker and reader agrees."""
        return zlib.crc32(user_id.encode("utf-8", "surrogatepass")) % shards

    @property
    def events_pattern(self) -> str:
        """SCAN pattern of every user's event list."""
        return f"{self.prefix}:ev:*"
