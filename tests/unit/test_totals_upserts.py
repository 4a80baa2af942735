"""totals.upserts: a transaction's pending totals as few multi-row statements, each row
one series' delta, in the order given (the order that keeps writers from deadlocking)."""

from __future__ import annotations

import pytest

from receiver.store import totals


def deltas(count: int) -> list[tuple[tuple[str, str], float]]:
    return [((f"metric_{n:03d}", f'{{"n":"{n}"}}'), float(n)) for n in range(count)]


@pytest.mark.parametrize(
    "count", [1, totals.UPSERT_ROWS - 1, totals.UPSERT_ROWS, 2 * totals.UPSERT_ROWS + 1]
)
def test_every_delta_is_written_once_in_order_in_statements_of_at_most_the_row_limit(
    count: int,
) -> None:
    given = deltas(count)
    statements = list(totals.upserts(given, None))
    sizes = [len(params) // 3 for _, params in statements]
    full, rest = divmod(count, totals.UPSERT_ROWS)
    assert sizes == [totals.UPSERT_ROWS] * full + ([rest] if rest else [])
    written = [params[i : i + 3] for _, params in statements for i in range(0, len(params), 3)]
    assert written == [[metric, labels, delta] for (metric, labels), delta in given]
    for sql, params in statements:
        assert sql == totals.upsert_sql(len(params) // 3, False)
        assert sql.count("?") == len(params)


def test_a_shards_rows_carry_the_shard_before_the_delta() -> None:
    ((sql, params),) = totals.upserts(deltas(2), 5)
    assert params == ["metric_000", '{"n":"0"}', 5, 0.0, "metric_001", '{"n":"1"}', 5, 1.0]
    assert sql.startswith("INSERT INTO metric_total_shards (metric, labels, shard, value)")
    assert "ON CONFLICT (metric, labels, shard)" in sql


def test_the_single_writer_adds_to_the_series_own_row() -> None:
    ((sql, _),) = totals.upserts(deltas(1), None)
    assert sql.startswith("INSERT INTO metric_totals (metric, labels, value) VALUES (?, ?, ?) ")
    assert sql.endswith(
        "ON CONFLICT (metric, labels) DO UPDATE SET value = metric_totals.value + excluded.value"
    )


def test_nothing_pending_writes_nothing() -> None:
    assert list(totals.upserts([], None)) == []
