"""Schema revision 0005's conversion of cumulative histogram buckets to per-bucket
counts (pure part), and that reading converts them back to what was stored."""

from __future__ import annotations

import importlib
import math

from receiver.store import totals

#: the revision's module (its file name starts with a digit, as Alembic's do)
revision = importlib.import_module("receiver.store.migrations.versions.0005_histogram_buckets")

METRIC = "remediator_incident_duration_seconds_bucket"


def _key(le: str, **labels: str) -> tuple[str, str]:
    return METRIC, totals.canonical_json({**labels, "le": le})


def test_each_bucket_becomes_its_count_less_the_bucket_below_it() -> None:
    cumulative = {_key("1"): 2.0, _key("5"): 3.0, _key("+Inf"): 7.0}
    assert revision.per_bucket(cumulative) == {_key("1"): 2.0, _key("5"): 1.0, _key("+Inf"): 4.0}


def test_bounds_are_ordered_by_value_not_as_text_and_series_apart() -> None:
    """ "15" sorts before "5" as text; each service's buckets are differenced alone."""
    cumulative = {
        _key("15", service="web"): 4.0,
        _key("5", service="web"): 1.0,
        _key("+Inf", service="web"): 4.0,
        _key("5", service="db"): 2.0,
        _key("15", service="db"): 2.0,
        _key("+Inf", service="db"): 9.0,
    }
    assert revision.per_bucket(cumulative) == {
        _key("5", service="web"): 1.0,
        _key("15", service="web"): 3.0,
        _key("+Inf", service="web"): 0.0,
        _key("5", service="db"): 2.0,
        _key("15", service="db"): 0.0,
        _key("+Inf", service="db"): 7.0,
    }


def test_rows_an_old_journal_never_wrote_below_the_first_observation_stay_missing() -> None:
    cumulative = {_key("300"): 1.0, _key("600"): 3.0, _key("+Inf"): 3.0}
    assert revision.per_bucket(cumulative) == {
        _key("300"): 1.0,
        _key("600"): 2.0,
        _key("+Inf"): 0.0,
    }


def test_reading_the_converted_rows_gives_back_every_cumulative_bucket() -> None:
    observations = [0.0, 1.0, 3.0, 15.0, 16.0, 86400.0, 1e7]
    bounds = (*totals.DURATION_BUCKETS, math.inf)
    cumulative = {
        _key(totals.le(b), service="web"): float(sum(v <= b for v in observations)) for b in bounds
    }
    rows = [(m, labels, v) for (m, labels), v in revision.per_bucket(cumulative).items()]
    read = {
        (METRIC, totals.canonical_json(labels)): value
        for labels, value in totals.read_totals(rows)[METRIC]
    }
    assert read == cumulative
