"""Form tokens (receiver/console/csrf.py): bound to a key, a user and a time window."""

from __future__ import annotations

import pytest

from receiver.console import csrf

KEY = bytes(range(32))
NOW = 1_800_000_000.0


def test_a_token_issued_for_a_user_is_accepted_for_that_user():
    assert csrf.check(KEY, "alice", csrf.issue(KEY, "alice", NOW), NOW + 5) is None


def test_a_token_of_one_user_is_refused_for_another():
    refusal = csrf.check(KEY, "mallory", csrf.issue(KEY, "alice", NOW), NOW)
    assert refusal is not None and "not valid" in refusal


def test_a_token_signed_with_another_key_is_refused():
    other = bytes(32)
    assert csrf.check(KEY, "alice", csrf.issue(other, "alice", NOW), NOW) is not None


def test_a_token_expires_after_max_age():
    token = csrf.issue(KEY, "alice", NOW)
    assert csrf.check(KEY, "alice", token, NOW + csrf.MAX_AGE) is None
    refusal = csrf.check(KEY, "alice", token, NOW + csrf.MAX_AGE + 1)
    assert refusal is not None and "expired" in refusal


def test_a_token_from_the_future_beyond_the_clock_skew_is_refused():
    token = csrf.issue(KEY, "alice", NOW + csrf.CLOCK_SKEW + 1)
    assert csrf.check(KEY, "alice", token, NOW) is not None
    assert csrf.check(KEY, "alice", csrf.issue(KEY, "alice", NOW + 30), NOW) is None


def test_changing_the_issued_time_invalidates_the_signature():
    issued, _, mac = csrf.issue(KEY, "alice", NOW).partition(".")
    forged = f"{int(issued, 16) + 3600:x}.{mac}"
    assert csrf.check(KEY, "alice", forged, NOW + 3600) is not None


@pytest.mark.parametrize(
    "token", [None, "", "abc", ".", "zz.00", "1" * 40 + ".00", "10.", ".deadbeef"]
)
def test_missing_or_malformed_tokens_are_refused_with_a_reason(token):
    refusal = csrf.check(KEY, "alice", token, NOW)
    assert isinstance(refusal, str) and refusal
