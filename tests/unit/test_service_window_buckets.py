"""The bucket arithmetic of store/servicewindows.py and the bulk builder of schema
revision 0003, which backfills an upgraded journal (pure parts)."""

from __future__ import annotations

import importlib
import math

import pytest

from receiver.store.servicewindows import BUCKET_SECONDS, bucket_of, first_whole_bucket

#: the revision's module (its file name starts with a digit, as Alembic's do)
backfill_revision = importlib.import_module(
    "receiver.store.migrations.versions.0003_service_windows"
)
_Builder = backfill_revision._Builder

EDGE = 1_800_000_000.0 - (1_800_000_000.0 % BUCKET_SECONDS)


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (EDGE, EDGE),
        (EDGE + 0.5, EDGE),
        (EDGE + BUCKET_SECONDS - 1e-6, EDGE),
        (math.nextafter(EDGE, 0.0), EDGE - BUCKET_SECONDS),
        (-1.0, -float(BUCKET_SECONDS)),
    ],
)
def test_a_bucket_holds_its_start_and_not_its_end(at, expected):
    assert bucket_of(at) == expected
    assert bucket_of(at) <= at < bucket_of(at) + BUCKET_SECONDS


def test_the_first_whole_bucket_of_a_window_starting_on_an_edge_is_that_edge():
    assert first_whole_bucket(EDGE) == EDGE
    assert first_whole_bucket(EDGE + 1) == EDGE + BUCKET_SECONDS


def test_the_builder_keeps_disjoint_segments_with_what_each_has_before_it():
    built = _Builder()
    for start, end in [(0.0, 100.0), (50.0, 150.0), (120.0, 130.0), (200.0, 260.0), (300, 290)]:
        built.add(start, end)
    # union [0,150] and [200,260]; the inverted (300, 290) covers nothing
    assert built.segments == [[0.0, 150.0, 0.0], [200.0, 260.0, 150.0]]
    assert built.covered == 210.0
    # closings by end bucket: count and summed durations (the inverted one as 0 s)
    assert sum(count for count, _ in built.buckets.values()) == 5
    assert sum(seconds for _, seconds in built.buckets.values()) == 100 + 100 + 10 + 60


@pytest.mark.parametrize("at", [0.0, 299.999, 300.0, EDGE - 1e-6, EDGE, EDGE + 0.5, 1.7e9 + 0.1])
def test_the_revision_buckets_closings_as_the_live_code_does(at):
    # the backfill is a frozen copy: it must put a closing where a closing is put today
    assert backfill_revision.bucket_of(at) == bucket_of(at)
    assert backfill_revision.BUCKET_SECONDS == BUCKET_SECONDS
