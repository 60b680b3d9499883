"""Build versions: how they are made, and the check every version read back must pass.

A version names a folder under the artifacts root and a family of Redis keys. Anything that
reads one back from Redis (the current-build pointer, the registry of builds, key names) or from
a folder listing checks it against the one format ``new_build_version`` produces before using it
as a path or in a key: any client of an unauthenticated Redis could otherwise write
``../victim`` into the registry and have the next build delete that folder (issue 12).
"""

import logging
import re
import secrets
import time
from collections.abc import Iterable

log = logging.getLogger(__name__)

# 20261125T101530Z-3fa2c1: UTC time of the build's start, then 3 random bytes in hex.
BUILD_VERSION_RE = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}")
STAGING_PREFIX = ".staging-"


def new_build_version() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


def is_build_version(text: str) -> bool:
    return BUILD_VERSION_RE.fullmatch(text) is not None


def valid_versions(candidates: Iterable[str], source: str) -> list[str]:
    """The candidates that are build versions, in order; each other one is logged and dropped.

    ``source`` says where they were read (e.g. ``redis key recsys:builds``) for the log line.
    """
    valid = []
    for text in candidates:
        if is_build_version(text):
            valid.append(text)
        else:
            log.warning("ignoring %r from %s: not a build version", text, source)
    return valid


def staging_dir_name(version: str) -> str:
    return f"{STAGING_PREFIX}{version}"


def version_of_staging(name: str) -> str | None:
    """The version of a ``.staging-<version>`` folder name, None for any other name."""
    if not name.startswith(STAGING_PREFIX):
        return None
    version = name.removeprefix(STAGING_PREFIX)
    return version if is_build_version(version) else None
