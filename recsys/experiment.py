"""Named builds and the A/B split between them: which build line a user's answers come from.

A build belongs to a *name* (``recsys build --name challenger``; ``champion`` by default), and
each name has its own pointer to its newest build in Redis (``recsys.store.keys.Keys.pointer``).
An experiment splits users between names with fixed shares (``serve.ab``). A user's arm is a
stable hash of a per-experiment salt and the user id, so the same user always lands in the same
arm while the experiment runs, every worker and replica agrees without talking to the others,
and a new salt draws a fresh, independent split (Kohavi, Tang & Xu, "Trustworthy Online
Controlled Experiments", 2020, ch. 4: randomise by user, hash with an experiment-specific seed).
"""

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

DEFAULT_BUILD_NAME: Final = "champion"
"""The name of a build made without ``--name``, and the build served without an experiment."""
MAX_ARMS: Final = 8
"""Arms of one experiment: a label of the live metrics, so its values stay a small set."""
SHARE_TOLERANCE: Final = 1e-6
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_HASH_SPACE: Final = 2.0**64


def check_build_name(name: str) -> str:
    """``name`` if it can name a build line (a Redis key part and a metrics label), else a
    ValueError saying what a name may be."""
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"build name {name!r}: use 1-32 characters, lowercase letters, digits, '-' or '_', "
            "starting with a letter (e.g. champion, challenger)"
        )
    return name


def check_split(shares: Mapping[str, float]) -> dict[str, float]:
    """A traffic split as configured: valid names, shares in (0, 1] summing to 1."""
    if not shares:
        return {}
    if len(shares) > MAX_ARMS:
        raise ValueError(f"an experiment has at most {MAX_ARMS} arms, got {len(shares)}")
    for name, share in shares.items():
        check_build_name(name)
        if not 0.0 < share <= 1.0:
            raise ValueError(f"arm {name!r}: share {share} must be in (0, 1]")
    total = sum(shares.values())
    if abs(total - 1.0) > SHARE_TOLERANCE:
        raise ValueError(f"arm shares must sum to 1, got {total:g} ({dict(shares)})")
    return dict(shares)


def unit_interval_hash(salt: str, user_id: str) -> float:
    """A uniform number in [0, 1) fixed by (salt, user id): 64 bits of BLAKE2b."""
    digest = hashlib.blake2b(f"{salt}\x00{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _HASH_SPACE


@dataclass(frozen=True)
class TrafficSplit:
    """Arms in name order with their cumulative shares; one arm (the champion) without an
    experiment."""

    arms: tuple[str, ...]
    upper: tuple[float, ...]  # arm i takes hashes in [upper[i-1], upper[i])
    salt: str

    @classmethod
    def of(cls, shares: Mapping[str, float], salt: str) -> "TrafficSplit":
        checked = check_split(shares) or {DEFAULT_BUILD_NAME: 1.0}
        arms = tuple(sorted(checked))  # name order: the split does not depend on dict order
        total, upper = 0.0, []
        for arm in arms:
            total += checked[arm]
            upper.append(total)
        upper[-1] = 1.0  # floating sums of shares that add up to 1 may stop just short
        return cls(arms, tuple(upper), salt)

    @property
    def is_experiment(self) -> bool:
        return len(self.arms) > 1 or self.arms != (DEFAULT_BUILD_NAME,)

    def share(self, arm: str) -> float:
        i = self.arms.index(arm)
        return self.upper[i] - (self.upper[i - 1] if i else 0.0)

    def assign(self, user_id: str) -> str:
        """The arm of ``user_id``: the same answer every time, on every worker."""
        if len(self.arms) == 1:
            return self.arms[0]
        x = unit_interval_hash(self.salt, user_id)
        for arm, upper in zip(self.arms, self.upper, strict=True):
            if x < upper:
                return arm
        return self.arms[-1]
