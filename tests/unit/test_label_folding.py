"""Folding label values past the bound at export (receiver/store/labels.py)."""

from __future__ import annotations

from receiver.store.labels import OTHER, fold_label_set, fold_totals

ADMITTED = {"service": {"web", "db"}, "strategy": {"restart"}}


def test_admitted_values_keep_their_own_series() -> None:
    labels = {"service": "web", "le": "5"}
    assert fold_label_set(labels, ADMITTED) == labels


def test_a_value_not_admitted_becomes_other() -> None:
    assert fold_label_set({"service": "cache", "le": "5"}, ADMITTED) == {
        "service": OTHER,
        "le": "5",
    }


def test_labels_of_fixed_sets_are_never_folded() -> None:
    labels = {"status": "firing", "outcome": "succeeded", "state": "open"}
    assert fold_label_set(labels, {}) == labels


def test_folded_totals_are_summed_into_one_series() -> None:
    metric = "remediator_incident_duration_seconds_count"
    totals = {
        metric: [
            ({"service": "web"}, 2.0),
            ({"service": "cache"}, 3.0),
            ({"service": "queue"}, 4.0),
            ({"service": OTHER}, 1.0),
        ]
    }
    folded = dict(
        (labels["service"], value) for labels, value in fold_totals(totals, ADMITTED)[metric]
    )
    assert folded == {"web": 2.0, OTHER: 3.0 + 4.0 + 1.0}
