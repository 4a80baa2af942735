"""Bounded label values of exported metrics: the first N values seen keep their series.

A label whose values come from alerts, rendered templates or the config (`service`,
`target`, `strategy`; the others are fixed sets named in the code) may take at most
`limits.max_label_values` values per label name; any further value is written and
exported as the one value `other`, so neither `/metrics` nor the journal's running
totals grow with what senders invent:

    new value ──► known? ──yes──► seq < bound? ──yes──► its own series
                    │ no                 │ no
                    ▼                    ▼
             fewer than bound ──no──► "other"  (+1 remediator_label_values_folded_total,
             admitted? ──yes──► admitted         one warning per label and process)
             with the next seq

Which values are admitted is journaled (table `metric_label_values`, each value with
its order of arrival `seq`), inside the same write transaction as the event, so the
decision is the same in every process and stable across restarts; lowering the bound
later folds the values that arrived last. The name `other` itself is never admitted:
it is the fold. Gauges read from current state (breakers, replicas, health) and totals
journaled before this bound existed are folded the same way at export (`fold_totals`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from receiver.config import Limits

log = logging.getLogger(__name__)

OTHER = "other"
#: labels whose values are not a fixed set known in the code
BOUNDED_LABELS = frozenset({"service", "target", "strategy"})
FOLDED_METRIC = "remediator_label_values_folded_total"
# the table metric_label_values (label, value, seq) is made by the schema's revisions

Execute = Callable[[str, Sequence[Any]], Any]

#: The label's highest seq (its values are numbered 0, 1, 2... in order of arrival, never
#: removed), found by the index metric_label_values_by_seq in a few page reads: the next
#: value's seq is one more. (Not COUNT(*), which reads every value of the label, nor
#: MAX(seq) inside the INSERT, which SQLite does not find by the index there.)
LAST_SQL = "SELECT seq FROM metric_label_values WHERE label = ? ORDER BY seq DESC LIMIT 1"
#: Admits a value with a seq; inserts nothing when another writer admitted it meanwhile.
ADMIT_SQL = (
    "INSERT INTO metric_label_values (label, value, seq) VALUES (?, ?, ?) "
    "ON CONFLICT (label, value) DO NOTHING"
)


@dataclass
class LabelValues:
    """What this process knows of admitted values (committed ones only), per store.

    `bound` is `limits.max_label_values`, set by whoever holds the config
    (`SqlStore.apply_limits`). The cache holds at most the admitted values, so it is
    bounded like the metrics themselves.
    """

    bound: int = Limits.max_label_values
    _seq: dict[tuple[str, str], int] = field(default_factory=dict)
    _full: dict[str, int] = field(default_factory=dict)  # label -> bound it was full at
    _warned: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def known(self, label: str, value: str) -> int | None:
        return self._seq.get((label, value))

    def is_full(self, label: str) -> bool:
        return self._full.get(label) == self.bound

    def commit(self, admitted: dict[tuple[str, str], int], full: Iterable[str]) -> None:
        """Take what a committed transaction learnt (never a rolled-back one's)."""
        with self._lock:
            self._seq.update(admitted)
            for label in full:
                self._full[label] = self.bound

    def warn_once(self, label: str) -> None:
        with self._lock:
            if label in self._warned:
                return
            self._warned.add(label)
        log.warning(
            "metric label %r has reached limits.max_label_values (%d values): "
            "further values are exported as %r (see %s)",
            label,
            self.bound,
            OTHER,
            FOLDED_METRIC,
        )


class LabelFolder:
    """The fold decisions of one write transaction (see the module docstring)."""

    def __init__(
        self, known: LabelValues, execute: Execute, lock: Callable[[str], None] | None = None
    ) -> None:
        self.known = known
        self._execute = execute
        #: waits for the label's admission lock; None: one writer at a time (SQLite), so
        #: there is no lock to take (store/locks.py)
        self._lock = lock
        self.admitted: dict[tuple[str, str], int] = {}
        self.full: set[str] = set()
        self.folded: dict[str, int] = {}  # label -> events folded in this transaction

    def value(self, label: str, value: str, *, count: bool = True) -> str:
        """`value`, or OTHER when it is past the bound; count=True counts the event
        (False for zero series created ahead of any event)."""
        if label not in BOUNDED_LABELS or value == OTHER:
            return value
        seq = self._seq(label, value)
        if seq is not None and seq < self.known.bound:
            return value
        if count:
            self.folded[label] = self.folded.get(label, 0) + 1
        self.known.warn_once(label)
        return OTHER

    def labels(self, labels: dict[str, str], *, count: bool = True) -> dict[str, str]:
        """A label set with each bounded value folded as `value` does."""
        return {name: self.value(name, item, count=count) for name, item in labels.items()}

    def _seq(self, label: str, value: str) -> int | None:
        """The value's seq: known to this process, stored already by another
        transaction, or admitted now; None when it is not stored and the label is full."""
        key = (label, value)
        seq = self.admitted.get(key, self.known.known(label, value))
        if seq is not None:
            return seq
        if self._lock is not None:
            # concurrent writers: a value another writer admitted is found without
            # waiting for the label's lock, which only an admission needs
            seq = self._stored(label, value)
        if seq is None:
            seq = self._admit(label, value)
        if seq is None:  # not admitted: stored already, or the label is full
            seq = self._stored(label, value)
            if seq is None:
                self.full.add(label)
                return None
        self.admitted[key] = seq
        return seq

    def _admit(self, label: str, value: str) -> int | None:
        """Admit `value` with the label's next seq when the label has room: its seq, or
        None when the label is full or the value is stored already. Under the label's
        lock (concurrent writers: store/locks.py), so no other writer admits a value of
        this label between the choice of the seq and the insert; a value that another
        writer admitted meanwhile is a conflict, left as it is."""
        if label in self.full or self.known.is_full(label):
            return None
        if self._lock is not None:
            self._lock(label)
        last = self._execute(LAST_SQL, (label,)).fetchone()
        taken = 0 if last is None else last[0] + 1
        if taken >= self.known.bound:
            return None
        inserted = self._execute(ADMIT_SQL, (label, value, taken)).rowcount
        return taken if inserted == 1 else None

    def _stored(self, label: str, value: str) -> int | None:
        row = self._execute(
            "SELECT seq FROM metric_label_values WHERE label = ? AND value = ?", (label, value)
        ).fetchone()
        return None if row is None else row[0]


def admitted_values(rows: Iterable[tuple[str, str]]) -> dict[str, set[str]]:
    """label -> admitted values, from `SELECT label, value ... WHERE seq < bound`."""
    found: dict[str, set[str]] = {}
    for label, value in rows:
        found.setdefault(label, set()).add(value)
    return found


def fold_label_set(labels: dict[str, str], admitted: dict[str, set[str]]) -> dict[str, str]:
    """Fold a label set at export: a bounded label's value not admitted becomes OTHER."""
    return {
        name: value
        if name not in BOUNDED_LABELS or value in admitted.get(name, ()) or value == OTHER
        else OTHER
        for name, value in labels.items()
    }


def fold_totals(
    totals: dict[str, list[tuple[dict[str, Any], float]]], admitted: dict[str, set[str]]
) -> dict[str, list[tuple[dict[str, Any], float]]]:
    """Running totals with every not-admitted value folded into OTHER, summed (totals
    journaled before the bound, or past a bound lowered since, export bounded too)."""
    folded: dict[str, list[tuple[dict[str, Any], float]]] = {}
    for metric, series in totals.items():
        sums: dict[tuple[tuple[str, str], ...], float] = {}
        for labels, value in series:
            key = tuple(sorted(fold_label_set(labels, admitted).items()))
            sums[key] = sums.get(key, 0.0) + value
        folded[metric] = [(dict(key), value) for key, value in sums.items()]
    return folded
