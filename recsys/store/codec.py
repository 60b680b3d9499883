"""Compact binary value of one user in one build: candidates plus the seeded recent history.

One Redis GET per request fetches everything stage 2 needs from the offline job. Layout of
format 2 (little-endian; numpy dtypes so decoding is a handful of ``np.frombuffer`` calls, and
copies only where a field is widened, e.g. float16 scores to float32):

    header   <B H H I>   format version, n_candidates, n_history, n_events (user activity)
    int32    [n]  candidate item index (into the build's item table)
    float16  [n]  stage-1 score
    uint16   [n]  source bit flags (recsys.candidates.registry: room for 16 sources)
    int32    [h]  history item index, oldest first
    uint32   [h]  history timestamp (unix seconds; fits until 2106)
    uint8    [h]  history device code (build vocabulary, 0 = unknown)
    uint8    [h]  history completion in percent, 255 = unknown

500 candidates + 20 history events = 4,209 bytes.

Format 1 stored the flags as uint8 (8 sources) and is still decoded: a new API swaps builds at
run time, and until the first build of the new code is published it reads states an older
build wrote. Only format 2 is written.
"""

import struct

import numpy as np

from recsys.user_state import UserState

FORMAT_VERSION = 2
_HEADER = struct.Struct("<BHHI")
_NO_COMPLETION = 255
# bytes per candidate and per history event, by format (the flags' width is the difference)
_CANDIDATE_BYTES = {1: 4 + 2 + 1, 2: 4 + 2 + 2}
_FLAG_DTYPE = {1: "u1", 2: "<u2"}
_HISTORY_BYTES = 4 + 4 + 1 + 1


def encode_user_state(state: UserState) -> bytes:
    n, h = len(state.cand_item), len(state.hist_item)
    completion = np.where(
        np.isnan(state.hist_completion),
        _NO_COMPLETION,
        np.clip(np.rint(np.nan_to_num(state.hist_completion) * 100), 0, 100),
    ).astype(np.uint8)
    return b"".join(
        (
            _HEADER.pack(FORMAT_VERSION, n, h, min(state.n_events, 2**32 - 1)),
            state.cand_item.astype("<i4", copy=False).tobytes(),
            state.cand_score.astype("<f2").tobytes(),
            state.cand_sources.astype("<u2", copy=False).tobytes(),
            state.hist_item.astype("<i4", copy=False).tobytes(),
            state.hist_ts.astype("<u4").tobytes(),
            state.hist_device.astype(np.uint8, copy=False).tobytes(),
            completion.tobytes(),
        )
    )


def decode_user_state(blob: bytes) -> UserState:
    version, n, h, n_events = _HEADER.unpack_from(blob, 0)
    if version not in _CANDIDATE_BYTES:
        raise ValueError(f"user state format {version}, expected one of {list(_CANDIDATE_BYTES)}")
    expected = _HEADER.size + n * _CANDIDATE_BYTES[version] + h * _HISTORY_BYTES
    if len(blob) != expected:
        raise ValueError(f"user state of {len(blob)} bytes, expected {expected}")
    buf = memoryview(blob)
    pos = _HEADER.size

    def take(dtype: str, count: int) -> np.ndarray:
        nonlocal pos
        arr = np.frombuffer(buf, dtype=dtype, count=count, offset=pos)
        pos += arr.nbytes
        return arr

    cand_item = take("<i4", n)
    cand_score = take("<f2", n).astype(np.float32)
    cand_sources = take(_FLAG_DTYPE[version], n).astype(np.uint16, copy=False)
    hist_item = take("<i4", h)
    hist_ts = take("<u4", h).astype(np.int64)
    hist_device = take("u1", h)
    completion_pct = take("u1", h)
    hist_completion = np.where(
        completion_pct == _NO_COMPLETION, np.nan, completion_pct / 100.0
    ).astype(np.float32)
    # in field order: the names above are UserState's own
    return UserState(
        cand_item,
        cand_score,
        cand_sources,
        hist_item,
        hist_ts,
        hist_device,
        hist_completion,
        n_events,
    )


def as_served(state: UserState) -> UserState:
    """The state exactly as the API reads it back from Redis (quantised the same way): what
    the ranker's training set and a cold-start answer build their features from."""
    return decode_user_state(encode_user_state(state))
