"""Hypothesis strategies for untrusted input: webhook bodies, matcher strings, configs.

Each strategy mixes the well-formed with the broken: valid payloads, payloads mutated
one field at a time, truncated or corrupted bytes, wrong types, huge label sets and
values, unicode (lone surrogates included, which JSON's \\u escapes can carry), numbers
beyond what the store's INTEGER holds, and nesting deep enough to exhaust a recursive
parser.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

from receiver.alerts import (
    INDEXED_LABELS,
    MAX_LABELS,
    MAX_STORED_INT,
    MAX_VALUE_LENGTH,
    fingerprint_of,
)

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_CONFIG = REPO / "examples" / "remediation.yml"

# ---------------------------------------------------------------- JSON-ish values

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def nested(depth: int, inner: Any = 1) -> Any:
    """[[[...inner...]]] built without recursion, so that Python can make any depth."""
    value = inner
    for _ in range(depth):
        value = [value]
    return value


def nested_text(depth: int, kind: str) -> str:
    opening, closing = ("[", "]") if kind == "list" else ('{"a":', "}")
    return opening * depth + "1" + closing * depth


# ---------------------------------------------------------------- valid pieces

label_names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,15}", fullmatch=True)
label_values = st.one_of(
    st.text(max_size=24),  # any unicode, control characters, NUL, CRLF included
    st.sampled_from(["", "checkout", "; rm -rf /", "../../etc/passwd", "a\r\nb", "\x00"]),
    st.builds(lambda char, n: char * n, st.characters(), st.integers(200, MAX_VALUE_LENGTH)),
)
label_sets = st.dictionaries(label_names, label_values, min_size=1, max_size=6).map(
    lambda labels: {  # the journal keeps these in columns: NUL is refused there
        name: value.replace("\x00", "") if name in INDEXED_LABELS else value
        for name, value in labels.items()
    }
)
column_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40)
timestamps = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1)).map(
    lambda moment: moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
)


@st.composite
def valid_alerts(draw: st.DrawFn) -> dict[str, Any]:
    labels = draw(label_sets)
    status = draw(st.sampled_from(["firing", "resolved"]))
    body: dict[str, Any] = {
        "status": status,
        "labels": labels,
        "annotations": draw(st.dictionaries(st.text(max_size=10), label_values, max_size=3)),
        "startsAt": draw(timestamps),
        "endsAt": draw(timestamps) if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": draw(column_text),
        "fingerprint": fingerprint_of(labels),
    }
    for key in draw(st.sets(st.sampled_from(["annotations", "generatorURL", "fingerprint"]))):
        del body[key]  # optional fields a sender may omit
    return body


@st.composite
def valid_notifications(draw: st.DrawFn) -> dict[str, Any]:
    alerts = draw(st.lists(valid_alerts(), max_size=5))
    body = {
        "version": "4",
        "groupKey": draw(column_text),
        "truncatedAlerts": draw(st.integers(0, 1000)),
        "status": "firing" if any(a["status"] == "firing" for a in alerts) else "resolved",
        "receiver": draw(column_text),
        "groupLabels": draw(st.dictionaries(label_names, label_values, max_size=3)),
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example",
        "alerts": alerts,
    }
    body.update(draw(st.dictionaries(st.text(max_size=10), json_values, max_size=2)))
    body["alerts"] = alerts  # an unknown extra key may not replace the real fields
    body["version"] = "4"
    return body


# ---------------------------------------------------------------- broken pieces

WRONG = st.one_of(json_values, st.just(nested(200)))
lone_surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
with_surrogates = st.builds(  # a lone surrogate somewhere in ordinary text
    lambda before, lone, after: before + lone + after,
    st.text(max_size=6),
    lone_surrogates,
    st.text(max_size=6),
)
out_of_range = st.one_of(
    st.integers(MAX_STORED_INT + 1, 2**70),
    st.integers(-(2**70), -1),
    st.sampled_from([MAX_STORED_INT + 1, 2**63, 2**64, -(2**63) - 1, 1e308, -0.0, 1.5]),
)


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path into a JSON value (dict keys and list indexes)."""
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


@st.composite
def mutated_notifications(draw: st.DrawFn) -> Any:
    """A valid notification with one place replaced by a wrong value, a string with a
    lone surrogate or a number out of range, or deleted, or a label set blown past its
    limits; or with a lone surrogate in a key."""
    body = draw(valid_notifications())
    path = draw(st.sampled_from(_paths(body)))
    hows = ["replace", "delete", "huge-labels", "long-value", "surrogate", "number", "key"]
    how = draw(st.sampled_from(hows))
    if not path:
        return draw(WRONG)
    parent: Any = body
    for key in path[:-1]:
        parent = parent[key]
    last = path[-1]
    if how == "delete" and isinstance(parent, dict):
        del parent[last]
    elif how == "huge-labels":
        parent[last] = {f"l{i}": "v" for i in range(draw(st.integers(MAX_LABELS - 2, 400)))}
    elif how == "long-value":
        parent[last] = "x" * draw(st.integers(MAX_VALUE_LENGTH - 2, MAX_VALUE_LENGTH + 10))
    elif how == "surrogate":
        parent[last] = draw(with_surrogates)
    elif how == "number":
        parent[last] = draw(out_of_range)
    elif how == "key" and isinstance(parent, dict):
        parent[draw(with_surrogates)] = parent.pop(last)
    else:
        parent[last] = draw(WRONG)
    return body


@dataclass(frozen=True)
class Body:
    raw: bytes
    valid: bool  # a well-formed notification that must be accepted if it fits the limit
    alerts: int = 0


def _encode(value: Any, ascii_only: bool) -> bytes:
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


@st.composite
def corrupted(draw: st.DrawFn) -> bytes:
    raw = _encode(draw(valid_notifications()), draw(st.booleans()))
    how = draw(st.sampled_from(["truncate", "flip", "insert", "garbage"]))
    if how == "garbage":
        return draw(st.binary(max_size=200))
    at = draw(st.integers(0, max(0, len(raw) - 1)))
    if how == "truncate":
        return raw[:at]
    if how == "flip":
        return raw[:at] + bytes([raw[at] ^ draw(st.integers(1, 255))]) + raw[at + 1 :]
    return raw[:at] + draw(st.binary(min_size=1, max_size=8)) + raw[at:]


def _deep_labels(depth: int) -> bytes:
    """A notification whose first alert's labels are a list nested `depth` deep."""
    shell = json.dumps({"version": "4", "alerts": [{"status": "firing", "labels": "DEEP"}]})
    return shell.replace('"DEEP"', nested_text(depth, "list")).encode()


def _valid_body(body: dict[str, Any], ascii_only: bool) -> Body:
    return Body(_encode(body, ascii_only), True, len(body["alerts"]))


# deep enough to exhaust json's recursion limit (1000), small enough to fit in 64 KiB
DEPTHS = st.one_of(st.integers(1, 2000), st.sampled_from([990, 1001, 5000, 10000]))
valid_bodies = st.builds(_valid_body, valid_notifications(), st.booleans())
webhook_bodies = st.one_of(
    valid_bodies,
    valid_bodies,
    st.builds(lambda b, a: Body(_encode(b, a), False), mutated_notifications(), st.booleans()),
    st.builds(lambda b: Body(b, False), corrupted()),
    st.builds(lambda v: Body(_encode(v, True), False), json_values),
    st.builds(
        lambda depth, kind: Body(nested_text(depth, kind).encode(), False),
        DEPTHS,
        st.sampled_from(["list", "dict"]),
    ),
    st.builds(lambda depth: Body(_deep_labels(depth), False), DEPTHS),
)

# ---------------------------------------------------------------- matchers

REGEX_ALPHABET = "abcdef0123" + r"()[]{}*+?|\.^$-,:=!~<>#\"' " + "\n"
matcher_values = st.one_of(
    st.text(max_size=30),
    st.text(alphabet=REGEX_ALPHABET, max_size=30),
    st.builds(lambda n: "(" * n + ")" * n, st.integers(0, 3000)),
    st.builds(lambda n: f"x{{{n}}}", st.integers(0, 2**70)),
    st.builds(lambda n, m: f"x{{{n},{m}}}", st.integers(0, 2**40), st.integers(0, 2**70)),
)


@st.composite
def matcher_strings(draw: st.DrawFn) -> str:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.text(max_size=60))
    name = draw(st.one_of(label_names, st.text(max_size=8)))
    op = draw(st.sampled_from(["=", "!=", "=~", "!~", "==", "~", ""]))
    value = draw(matcher_values)
    quoted = draw(st.sampled_from(["plain", "quoted", "escaped"]))
    if quoted == "quoted":
        value = f'"{value}"'
    elif quoted == "escaped":
        value = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    space = draw(st.sampled_from(["", " ", "\t"]))
    return f"{space}{name}{space}{op}{space}{value}{space}"


# ---------------------------------------------------------------- configs

TOP_KEYS = ["server", "store", "prometheus", "alertmanager", "defaults", "executors"]
STRATEGY_KEYS = [
    "name", "matchers", "action", "executor", "target", "params", "command", "request",
    "scale", "timeout", "cooldown", "breaker", "budget", "verify", "preconditions",
    "continue", "dry_run", "safe_pattern", "silence", "escalate_on_failure", "idempotent",
]  # fmt: skip
config_leaves = st.one_of(
    scalars,
    st.sampled_from(["5m", "0s", "-1s", "1e3h", "10", "log", "command", "run", "token"]),
    st.builds(lambda n: "{{" + "(" * n + "1" + ")" * n + "}}", st.integers(0, 2000)),
    st.sampled_from(["{{ labels.x ", "{% for %}", "{{ labels.service }}", "x{99999999999}"]),
    matcher_strings(),
)
config_values = st.recursive(
    config_leaves,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from([*TOP_KEYS, *STRATEGY_KEYS, "type", "url"]), children)
    ),
    max_leaves=10,
)
strategy_dicts = st.fixed_dictionaries(
    {"name": st.text(min_size=1, max_size=8), "action": st.sampled_from(["run", "restart", "x"])},
    optional={key: config_values for key in STRATEGY_KEYS if key not in ("name", "action")},
)


@st.composite
def structured_configs(draw: st.DrawFn) -> str:
    top = draw(st.fixed_dictionaries({}, optional={key: config_values for key in TOP_KEYS}))
    top["executors"] = draw(
        st.one_of(
            st.just({"local": {"type": "command"}, "logger": {"type": "log"}}),
            config_values,
        )
    )
    top["strategies"] = draw(st.one_of(st.lists(strategy_dicts, max_size=3), config_values))
    return yaml.safe_dump(top, allow_unicode=draw(st.booleans()))


@st.composite
def mutated_example_configs(draw: st.DrawFn) -> str:
    lines = EXAMPLE_CONFIG.read_text().splitlines(keepends=True)
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(lines) - 1))
        how = draw(st.sampled_from(["delete", "duplicate", "replace", "truncate", "indent"]))
        if how == "delete":
            del lines[at]
        elif how == "duplicate":
            lines.insert(at, lines[at])
        elif how == "indent":
            lines[at] = draw(st.sampled_from([" ", "  ", "\t", ""])) + lines[at].lstrip()
        elif how == "truncate":
            lines[at] = lines[at][: draw(st.integers(0, len(lines[at])))]
        else:
            text = lines[at]
            cut = draw(st.integers(0, len(text)))
            lines[at] = text[:cut] + draw(st.text(max_size=6)) + text[cut + 1 :]
    return "".join(lines)


config_texts = st.one_of(
    st.text(max_size=200),
    structured_configs(),
    mutated_example_configs(),
    st.builds(lambda n: "[" * n + "]" * n, st.integers(1, 2500)),
    st.builds(lambda n: "a: " + "{b: " * n + "1" + "}" * n, st.integers(1, 5000)),
)
