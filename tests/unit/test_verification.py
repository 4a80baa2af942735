"""Which verification polls are journaled (receiver/verification.py) and how a sample
is worded (receiver/prometheus.py describe_sample)."""

from __future__ import annotations

import math

import pytest

from receiver.prometheus import SHOWN_VALUES, describe_sample, truthy
from receiver.verification import MAX_SAMPLE_EVENTS, PREFIX, SampleJournal


def journal_of(samples: list[str], limit: int = MAX_SAMPLE_EVENTS) -> list[str]:
    written: list[str] = []
    journal = SampleJournal(written.append, limit=limit)
    for sample in samples:
        journal.record(sample)
    return written


def test_a_steady_sample_is_journaled_once():
    assert journal_of(["0 (false)"] * 30) == [PREFIX + "0 (false)"]


def test_each_change_of_sample_is_journaled_in_order():
    polls = ["no series (false)", "no series (false)", "0 (false)", "1 (true)"]
    assert journal_of(polls) == [PREFIX + p for p in ("no series (false)", "0 (false)", "1 (true)")]


def test_a_sample_that_returns_after_another_is_journaled_again():
    assert journal_of(["0 (false)", "1 (true)", "0 (false)"]) == [
        PREFIX + "0 (false)",
        PREFIX + "1 (true)",
        PREFIX + "0 (false)",
    ]


def test_no_more_than_the_cap_are_journaled_however_many_polls_differ():
    polls = [f"{n} (true)" for n in range(3 * MAX_SAMPLE_EVENTS)]
    written = journal_of(polls)
    assert written == [PREFIX + p for p in polls[:MAX_SAMPLE_EVENTS]]


@pytest.mark.parametrize(
    ("values", "holds"),
    [([], False), ([0.0], False), ([math.nan], False), ([0.0, 2.0], True), ([-1.0], True)],
)
def test_a_result_holds_when_some_value_is_neither_zero_nor_nan(values, holds):
    assert truthy(values) is holds
    assert describe_sample(values).endswith("(true)" if holds else "(false)")


def test_a_sample_shows_its_first_values_and_counts_the_rest():
    values = [float(n) for n in range(SHOWN_VALUES + 3)]
    shown = ", ".join(f"{v:g}" for v in values[:SHOWN_VALUES])
    assert describe_sample(values) == f"{shown} (+3 more) (true)"
    assert describe_sample([]) == "no series (false)"
    assert describe_sample([0.25]) == "0.25 (true)"
