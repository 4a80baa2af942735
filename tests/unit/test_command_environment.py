"""The environment handed to a command is bounded (receiver/executors/command.py).

Each value is cut to `limits.command_env_value_bytes` with a marker, the whole alert
environment to `limits.command_env_bytes`, variables past it are left out in order, and
REMEDIATOR_ENV_TRUNCATED names what was cut. Expected values are computed from the rule.
"""

from __future__ import annotations

import pytest

from receiver.executors.base import ActionRequest
from receiver.executors.command import (
    TRUNCATED_VARIABLE,
    alert_environment,
    bound_environment,
    truncate_value,
    truncation_marker,
)

VALUE = 4096
TOTAL = 65536


def size(env: dict[str, str]) -> int:
    """Bytes as the kernel counts them: NAME=value and a NUL per variable."""
    return sum(len(k.encode()) + len(v.encode()) + 2 for k, v in env.items())


def request(annotations: dict[str, str], labels: dict[str, str] | None = None) -> ActionRequest:
    return ActionRequest(
        action_id=7,
        action="run",
        target="web-1",
        rendered={},
        labels=labels or {"alertname": "Big", "service": "web"},
        annotations=annotations,
        timeout=30.0,
        strategy="fix",
    )


def test_a_small_environment_is_handed_over_unchanged():
    env = alert_environment(request({"summary": "disk full"}))
    assert bound_environment(env, VALUE, TOTAL) == env


def test_a_long_value_is_cut_to_the_bound_with_a_marker_giving_its_size():
    value = "x" * 10_000
    bounded = bound_environment({"ALERT_ANNOTATION_BIG": value}, VALUE, TOTAL)
    cut = bounded["ALERT_ANNOTATION_BIG"]
    marker = truncation_marker(len(value))
    assert len(cut.encode()) == VALUE
    assert cut == "x" * (VALUE - len(marker)) + marker
    assert bounded[TRUNCATED_VARIABLE] == "ALERT_ANNOTATION_BIG"


def test_a_value_exactly_at_the_bound_is_not_cut():
    bounded = bound_environment({"A": "y" * VALUE}, VALUE, TOTAL)
    assert bounded == {"A": "y" * VALUE}


@pytest.mark.parametrize("char", ["é", "€", "😀"])
def test_multibyte_characters_are_never_split(char: str):
    value, cut = truncate_value(char * 5000, 100)
    assert cut
    assert len(value.encode()) <= 100
    assert value.endswith(truncation_marker(len((char * 5000).encode())))
    assert set(value[: -len(truncation_marker(len((char * 5000).encode())))]) == {char}


def test_a_lone_surrogate_becomes_a_question_mark():
    bounded = bound_environment({"A": "x\ud800y"}, VALUE, TOTAL)
    assert bounded["A"] == "x?y"
    bounded["A"].encode()  # exec needs bytes: this must not raise


def test_three_megabytes_of_annotations_fit_the_total_bound():
    annotations = {f"note_{n:04d}": "z" * 4000 for n in range(800)}  # 3.2 MB
    env = alert_environment(request(annotations))
    bounded = bound_environment(env, VALUE, TOTAL)
    assert size(bounded) <= TOTAL
    assert bounded["REMEDIATOR_ACTION_ID"] == "7"
    assert bounded["ALERT_LABEL_SERVICE"] == "web"
    kept = [name for name in bounded if name.startswith("ALERT_ANNOTATION_")]
    # kept in order while they fit: a prefix of the sorted annotations
    assert kept == [name for name in env if name.startswith("ALERT_ANNOTATION_")][: len(kept)]
    assert kept  # the first ones are there, whole (4000 bytes is within the value bound)
    assert all(bounded[name] == "z" * 4000 for name in kept)


def test_variables_past_the_total_are_listed_in_order():
    env = {f"V{n}": "v" * 1000 for n in range(100)}
    bounded = bound_environment(env, VALUE, 8192)
    listed = bounded[TRUNCATED_VARIABLE].split(",")
    kept = [name for name in env if name in bounded]
    assert kept + listed == list(env)  # every variable kept or listed, in env's order
    assert size(bounded) <= 8192


def test_a_small_variable_after_a_large_one_left_out_is_still_kept():
    env = {"A": "a" * 3000, "B": "b" * 3000, "C": "c"}
    bounded = bound_environment(env, VALUE, 5000)
    assert "A" in bounded
    assert "B" not in bounded
    assert bounded["C"] == "c"
    assert bounded[TRUNCATED_VARIABLE] == "B"
    assert size(bounded) <= 5000


def test_the_list_of_cut_variables_is_itself_bounded():
    env = {f"ALERT_ANNOTATION_{n:05d}": "q" * 5000 for n in range(2000)}
    bounded = bound_environment(env, 256, 4096)
    assert size(bounded) <= 4096
    listed = bounded[TRUNCATED_VARIABLE]
    assert len(listed.encode()) <= min(256, 4096 // 4)
    assert listed.startswith("ALERT_ANNOTATION_00000,ALERT_ANNOTATION_00001")


def test_a_name_longer_than_the_value_bound_is_left_out_not_altered():
    long_name = "ALERT_LABEL_" + "N" * 200
    bounded = bound_environment({long_name: "1", "SHORT": "2"}, 128, TOTAL)
    assert long_name not in bounded
    assert bounded["SHORT"] == "2"


def test_the_bounds_are_deterministic_whatever_order_annotations_arrive_in():
    names = [f"n{n}" for n in range(300)]
    first = {name: "w" * 700 for name in names}
    second = {name: "w" * 700 for name in reversed(names)}
    one = bound_environment(alert_environment(request(first)), VALUE, TOTAL)
    two = bound_environment(alert_environment(request(second)), VALUE, TOTAL)
    assert one == two
    assert list(one) == list(two)


def test_an_ascii_environment_exactly_filling_the_total_is_kept_whole():
    # The shortcut for all-ASCII variables within bounds must keep exactly what the
    # rule keeps: everything, when NAME=value\0 of all of them fits the total.
    env = {"A": "a" * 10, "B": "b" * 20}
    total = size(env)
    assert bound_environment(env, VALUE, total) == env
    assert list(bound_environment(env, VALUE, total)) == ["A", "B"]


def test_an_ascii_environment_one_byte_over_the_total_leaves_the_last_out():
    env = {"A": "a" * 10, "B": "b" * 20}
    total = size(env) - 1
    bounded = bound_environment(env, VALUE, total)
    assert "B" not in bounded
    assert TRUNCATED_VARIABLE in bounded


@pytest.mark.parametrize("value", ["caf\u00e9", "\udcff", "snow \u2603"])
def test_a_non_ascii_value_counts_its_utf8_bytes(value):
    # Not the shortcut: non-ASCII values are measured in UTF-8 (a lone surrogate as "?")
    encoded = value.encode("utf-8", errors="replace")
    env = {"A": value}
    assert bound_environment(env, VALUE, len(b"A=") + len(encoded) + 1) == {"A": encoded.decode()}
    assert "A" not in bound_environment(env, VALUE, len(b"A=") + len(encoded))
