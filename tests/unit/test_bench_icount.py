"""bench/icount.py's split of callgrind's counts by shared object (a callgrind output
file written by hand in callgrind's format: names compressed, calls' inclusive costs)."""

from __future__ import annotations

from collections import Counter

from bench.icount import marginal, self_cost_by_object, shares

CALLGRIND_OUT = """\
version: 1
creator: callgrind-3.19.0
events: Ir
summary: 1111

ob=(1) /usr/lib/libpython3.11.so.1.0
fl=(1) ceval.c
fn=(1) _PyEval_EvalFrameDefault
10 500
+2 100
cob=(2) /usr/lib/x86_64-linux-gnu/libsqlite3.so.0.8.6
cfi=(2) sqlite3.c
cfn=(2) sqlite3_step
calls=3 0x10
12 9000
-1 11

ob=(2)
fl=(2)
fn=(2)
0x10 300
* 50

ob=(3) /usr/lib/x86_64-linux-gnu/libc.so.6
fl=(3) memcpy.S
fn=(3) memcpy
5 150
"""


def test_each_objects_self_cost_excludes_the_calls_it_makes() -> None:
    split = self_cost_by_object(CALLGRIND_OUT.splitlines())
    # libpython: 500 + 100 + 11, not the 9,000 its call to sqlite3_step cost inclusively
    assert split == Counter(
        {"libpython3.11.so.1.0": 611, "libsqlite3.so.0.8.6": 350, "libc.so.6": 150}
    )


def test_an_object_first_named_in_a_call_is_known_by_its_id_after() -> None:
    # object 2 is named only by the `cob=` line; its own `ob=(2)` is the id alone
    assert self_cost_by_object(CALLGRIND_OUT.splitlines())["libsqlite3.so.0.8.6"] == 350


def test_marginal_cost_per_item_subtracts_the_smaller_runs() -> None:
    small, large = Counter({"a": 100, "b": 10}), Counter({"a": 300, "b": 50})
    less, more = Counter({"a": 50}), Counter({"a": 150, "b": 10})
    # a: ((300 - 100) - (150 - 50)) / 10; b: ((50 - 10) - (10 - 0)) / 10
    assert marginal(small, large, less, more, 10) == {"a": 10.0, "b": 3.0}


def test_shares_name_the_largest_objects_and_sum_the_rest() -> None:
    split = {
        "libpython3.11.so.1.0": 60.0,
        "libsqlite3.so.0.8.6": 25.0,
        "libc.so.6": 10.0,
        "_json.cpython-311-x86_64-linux-gnu.so": 3.0,
        "???": 2.0,
    }
    assert shares(split, top=3) == "libpython3.11 60%, libsqlite3 25%, libc 10%, other 5%"
