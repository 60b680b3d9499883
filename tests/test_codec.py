import struct

import numpy as np
import pytest

from recsys.store.codec import decode_user_state, encode_user_state
from recsys.user_state import UserState


def _state(rng: np.random.Generator, n: int, h: int) -> UserState:
    completion = rng.random(h).astype(np.float32)
    completion[::3] = np.nan
    return UserState(
        cand_item=rng.integers(0, 2**31 - 1, n).astype(np.int32),
        cand_score=rng.normal(size=n).astype(np.float32),
        cand_sources=rng.integers(0, 2**16, n).astype(np.uint16),  # all 16 source bits
        hist_item=np.r_[rng.integers(0, 10_000, max(h - 1, 0)), -1][:h].astype(np.int32),
        hist_ts=rng.integers(1_600_000_000, 1_800_000_000, h).astype(np.int64),
        hist_device=rng.integers(0, 5, h).astype(np.uint8),
        hist_completion=completion,
        n_events=int(rng.integers(0, 10**6)),
    )


@pytest.mark.parametrize(("n", "h"), [(500, 20), (0, 0), (1, 1), (37, 0)])
def test_round_trip(n: int, h: int) -> None:
    state = _state(np.random.default_rng(n + h), n, h)
    blob = encode_user_state(state)
    back = decode_user_state(blob)
    assert len(blob) == 9 + 8 * n + 10 * h
    np.testing.assert_array_equal(back.cand_item, state.cand_item)
    np.testing.assert_array_equal(back.cand_sources, state.cand_sources)
    np.testing.assert_array_equal(back.hist_item, state.hist_item)
    np.testing.assert_array_equal(back.hist_ts, state.hist_ts)
    np.testing.assert_array_equal(back.hist_device, state.hist_device)
    # scores travel as float16, completion as whole percent: quantised, never reordered
    np.testing.assert_allclose(back.cand_score, state.cand_score, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(back.hist_completion, state.hist_completion, atol=0.005)
    assert np.array_equal(np.isnan(back.hist_completion), np.isnan(state.hist_completion))
    assert back.n_events == state.n_events


def test_decoding_is_stable() -> None:
    """Encoding what was decoded gives the same bytes: offline and online see one quantisation."""
    blob = encode_user_state(_state(np.random.default_rng(3), 50, 10))
    assert encode_user_state(decode_user_state(blob)) == blob


def test_truncated_value_is_rejected() -> None:
    blob = encode_user_state(_state(np.random.default_rng(4), 10, 2))
    with pytest.raises(ValueError, match="expected"):
        decode_user_state(blob[:-1])


def _format_1(state: UserState) -> bytes:
    """A value as builds before format 2 wrote it: the same layout with one byte of flags."""
    completion = np.where(
        np.isnan(state.hist_completion), 255, np.rint(state.hist_completion * 100)
    ).astype(np.uint8)
    return b"".join(
        (
            struct.pack("<BHHI", 1, len(state.cand_item), len(state.hist_item), state.n_events),
            state.cand_item.astype("<i4").tobytes(),
            state.cand_score.astype("<f2").tobytes(),
            state.cand_sources.astype(np.uint8).tobytes(),
            state.hist_item.astype("<i4").tobytes(),
            state.hist_ts.astype("<u4").tobytes(),
            state.hist_device.astype(np.uint8).tobytes(),
            completion.tobytes(),
        )
    )


def test_states_of_a_format_1_build_still_decode() -> None:
    """During an upgrade the new API serves the old build until the next one is published."""
    rng = np.random.default_rng(5)
    state = _state(rng, 40, 8)
    state = UserState(**{**state.__dict__, "cand_sources": rng.integers(0, 256, 40, np.uint8)})
    back = decode_user_state(_format_1(state))
    assert back.cand_sources.dtype == np.uint16
    np.testing.assert_array_equal(back.cand_sources, state.cand_sources)
    np.testing.assert_array_equal(back.cand_item, state.cand_item)
    np.testing.assert_array_equal(back.hist_ts, state.hist_ts)
    assert back.n_events == state.n_events
    # and it re-encodes in the current format, to the same values
    again = decode_user_state(encode_user_state(back))
    np.testing.assert_array_equal(again.cand_sources, state.cand_sources)


def test_unknown_format_is_rejected() -> None:
    blob = bytearray(encode_user_state(_state(np.random.default_rng(6), 3, 1)))
    blob[0] = 9
    with pytest.raises(ValueError, match="format 9"):
        decode_user_state(bytes(blob))
