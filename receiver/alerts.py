"""Alertmanager webhook payload (version 4): model and validation.

Everything from the network is validated here, once, so that the rest of the code can
trust types. Unknown fields are ignored, as Alertmanager may add some.

Whatever is accepted here must be storable as it is, on every store: each string is
valid UTF-8 (JSON's `\ud800` escapes can make a lone surrogate, which no UTF-8 encoder
takes); the strings the journal keeps in columns of their own (every top-level string,
`generatorURL`, the values of `alertname` and of the service labels) hold no NUL, which
PostgreSQL's TEXT refuses (other label and annotation values are stored as escaped JSON,
so a NUL there is kept); integers fit the store's INTEGER; timestamps lie in years
1-9999. Anything else is a PayloadError naming the field, never an error further on.

One bad alert never costs its group (issue 12): the envelope (everything but `alerts`)
is Alertmanager's own and refuses the body whole when invalid, but each alert is judged
alone by parse_alerts. An annotation value over MAX_VALUE_LENGTH is kept cut, ending
with TRUNCATION_MARKER, and annotations past MAX_LABELS are left out (the first ones in
key order are kept): the alert is journaled all the same, marked `truncated`. Any other
fault refuses THAT alert (a Refusal: index, field, reason), and the others are journaled.
Only when every alert of a non-empty list is refused is the body refused whole.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from receiver.matchers import is_label_name

STATUSES = ("firing", "resolved")
MAX_LABELS = 256
MAX_VALUE_LENGTH = 16384
#: ends a cut annotation value; {} is the number of characters cut off
TRUNCATION_MARKER = "…[truncated by remediator: {} characters]"
#: why an alert was counted in remediator_alerts_rejected_total: a bounded set
REJECT_REASONS = (
    "truncated",
    "invalid_label",
    "invalid_annotation",
    "invalid_timestamp",
    "invalid_utf8",
    "invalid_nul",
    "invalid_fingerprint",
    "invalid_status",
    "invalid_alert",
)
MAX_STORED_INT = 2**31 - 1  # PostgreSQL's INTEGER (SQLite's is wider)
#: labels whose values the journal keeps in columns (alertname, and the service labels
#: by default): no NUL in them. The writer passes the configured service labels.
INDEXED_LABELS = ("alertname", "service", "job")
_TIMESTAMP = re.compile(  # ASCII digits only: \d would take any script's digits
    r"(?P<base>\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2})(?:\.(?P<frac>\d+))?"
    r"(?P<tz>[Zz]|[+-]\d{2}:\d{2})",
    re.ASCII,
)
_GO_ZERO_YEAR = 1
#: Go's zero time as Alertmanager writes it: "not set"
GO_ZERO_TIME = "0001-01-01T00:00:00Z"
_FINGERPRINT = re.compile(r"[0-9A-Za-z]{1,64}")
_TIMESTAMP_TEXT = "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ"  # format_timestamp's


class PayloadError(ValueError):
    """An invalid payload; `field` is a JSON path such as `alerts[2].labels`; `reason`
    one of REJECT_REASONS (told by the field when not given)."""

    def __init__(self, field: str, message: str, reason: str | None = None) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.reason = reason or reason_of_field(field)


def reason_of_field(path: str) -> str:
    """The REJECT_REASONS entry for a fault at JSON path `path` (`alerts[1].labels.x`)."""
    part = path.split("].", 1)[1] if "]." in path else ""
    head = part.split(".", 1)[0]
    return {
        "labels": "invalid_label",
        "annotations": "invalid_annotation",
        "startsAt": "invalid_timestamp",
        "endsAt": "invalid_timestamp",
        "fingerprint": "invalid_fingerprint",
        "status": "invalid_status",
    }.get(head, "invalid_alert")


@dataclass(frozen=True)
class Refusal:
    """One alert refused alone: its index in `alerts`, the JSON path of the bad field,
    why (an operator's sentence) and the counted reason (one of REJECT_REASONS)."""

    index: int
    field: str
    message: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "field": self.field, "reason": self.message}


@dataclass(frozen=True)
class ParsedAlerts:
    """A slice of `alerts` judged alert by alert: the accepted ones (in order) and the
    refused ones (see the module docstring)."""

    alerts: tuple[Alert, ...]
    refused: tuple[Refusal, ...]


@dataclass(frozen=True)
class Alert:
    status: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime
    ends_at: datetime | None
    fingerprint: str
    generator_url: str = ""
    #: an annotation was cut or left out (see TRUNCATION_MARKER); not part of identity
    truncated: bool = field(default=False, compare=False)

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", "")

    @cached_property
    def starts_at_text(self) -> str:
        """startsAt in the journal's text form (format_timestamp): the incident's key,
        wanted by ingest and by the template context, formatted once."""
        return format_timestamp(self.starts_at)

    def template_context(self) -> dict[str, Any]:
        """What strategy templates may refer to: `labels`, `annotations`, `alert`."""
        return {
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "alert": {
                "status": self.status,
                "fingerprint": self.fingerprint,
                "starts_at": self.starts_at_text,
                "generator_url": self.generator_url,
            },
        }


@dataclass(frozen=True)
class Notification:
    receiver: str
    status: str
    alerts: tuple[Alert, ...]
    group_key: str = ""
    truncated_alerts: int = 0
    group_labels: dict[str, str] = field(default_factory=dict)
    common_labels: dict[str, str] = field(default_factory=dict)
    common_annotations: dict[str, str] = field(default_factory=dict)
    external_url: str = ""
    version: str = "4"
    #: the alerts refused alone (not in `alerts`), in index order
    refused: tuple[Refusal, ...] = ()


def parse_timestamp(value: Any, where: str) -> datetime | None:
    """RFC 3339 with Go's nanoseconds; Go's zero time (year 1) means "not set"."""
    if value == GO_ZERO_TIME:  # every firing alert's endsAt
        return None
    if not isinstance(value, str):
        raise PayloadError(where, f"expected an RFC 3339 timestamp string, got {_kind(value)}")
    found = _TIMESTAMP.fullmatch(value.strip())
    if not found:
        raise PayloadError(where, f"invalid RFC 3339 timestamp {value[:64]!r}")
    frac = (found["frac"] or "")[:6].ljust(6, "0")
    tz = "+00:00" if found["tz"] in ("Z", "z") else found["tz"]
    try:
        parsed = datetime.fromisoformat(f"{found['base'].replace(' ', 'T')}.{frac}{tz}")
        if parsed.year <= _GO_ZERO_YEAR:
            return None
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise PayloadError(where, f"invalid timestamp {value[:64]!r}: {exc}") from exc


def format_timestamp(moment: datetime | None) -> str:
    """Canonical UTC form with microseconds; also the incident key's text form."""
    if moment is None:
        return GO_ZERO_TIME
    utc = moment.astimezone(UTC)
    if utc.year < 1000:  # strftime's %Y writes such a year unpadded (glibc): keep its text
        return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    # the same text as that strftime, at half the cost (once per alert: its key)
    return _TIMESTAMP_TEXT % (
        utc.year,
        utc.month,
        utc.day,
        utc.hour,
        utc.minute,
        utc.second,
        utc.microsecond,
    )


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _shown(name: str) -> str:
    """A key as it may appear in a field path: cut, and printable even when it is not
    valid UTF-8 (the path goes into the answer and the log)."""
    return name[:64].encode("utf-8", "backslashreplace").decode("utf-8")


def _text(value: str, path: str, *, nul: bool) -> str:
    """value if it is storable: valid UTF-8, and without NUL unless `nul`."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise PayloadError(
            path,
            f"not valid UTF-8: lone surrogate {value[exc.start]!r} at {exc.start}",
            "invalid_utf8",
        ) from None
    if not nul and "\x00" in value:
        raise PayloadError(
            path, f"NUL character at {value.index(chr(0))} (not storable)", "invalid_nul"
        )
    return value


def _plain(value: Any) -> bool:
    """Whether `value` is storable text that needs no closer look (the common case, told
    in one pass): a str of ASCII (valid UTF-8 by construction) within MAX_VALUE_LENGTH
    characters, without NUL. Anything else is judged by the checks that name the fault."""
    return (
        type(value) is str
        and len(value) <= MAX_VALUE_LENGTH
        and value.isascii()
        and "\x00" not in value
    )


def _string(obj: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = obj.get(key, default)
    if _plain(value):
        return value  # type: ignore[no-any-return]
    if not isinstance(value, str):
        raise PayloadError(f"{where}{key}", f"expected a string, got {_kind(value)}")
    if len(value) > MAX_VALUE_LENGTH:
        raise PayloadError(f"{where}{key}", f"longer than {MAX_VALUE_LENGTH} characters")
    return _text(value, f"{where}{key}", nul=False)


def _label_set(
    obj: Mapping[str, Any],
    key: str,
    where: str,
    *,
    names: bool,
    indexed: tuple[str, ...] = (),
) -> dict[str, str]:
    """A JSON object of strings; with `names`, its keys are label names. Values of the
    `indexed` keys may not hold NUL (see the module docstring)."""
    value = obj.get(key, {})
    path = f"{where}{key}"
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PayloadError(path, f"expected an object of strings, got {_kind(value)}")
    if len(value) > MAX_LABELS:
        raise PayloadError(path, f"more than {MAX_LABELS} entries")
    for name, item in value.items():
        # an ASCII name (non-empty for a label) and a plain value cannot fail a check
        # of _check_entry: skip building their path (most entries, most of the cost)
        if not (_plain(item) and name.isascii() and (name or not names)):
            _check_entry(f"{path}.{_shown(name)}", name, item, names, name not in indexed)
    return dict(value)


def _check_entry(at: str, name: str, item: Any, names: bool, nul: bool) -> None:
    """Raise PayloadError (path `at`) for the first fault of one entry of a label set:
    the name not storable (or, with `names`, not a label name), the value not a string,
    too long, or not storable (holding NUL, unless `nul`)."""
    _text(name, at, nul=True)  # a name is stored inside escaped JSON only
    if names and not is_label_name(name):  # UTF-8, as Prometheus 3: only "" is left
        raise PayloadError(at, "invalid label name: empty")
    if not isinstance(item, str):
        raise PayloadError(at, f"expected a string, got {_kind(item)}")
    if len(item) > MAX_VALUE_LENGTH:
        raise PayloadError(at, f"longer than {MAX_VALUE_LENGTH} characters")
    _text(item, at, nul=nul)


def cut_value(value: str) -> str:
    """`value` cut to MAX_VALUE_LENGTH characters, the last ones being the marker that
    says how many were cut off; unchanged when it fits."""
    if len(value) <= MAX_VALUE_LENGTH:
        return value
    bare = len(TRUNCATION_MARKER.format(""))
    keep = MAX_VALUE_LENGTH - bare - len(str(len(value)))  # at worst one short
    for digits in range(1, len(str(len(value))) + 1):  # the figure's width that fills it
        if len(str(len(value) - (MAX_VALUE_LENGTH - bare - digits))) == digits:
            keep = MAX_VALUE_LENGTH - bare - digits
            break
    return value[:keep] + TRUNCATION_MARKER.format(len(value) - keep)


def _annotations(obj: Mapping[str, Any], where: str) -> tuple[dict[str, str], bool]:
    """An alert's annotations and whether any was cut: text for people (descriptions,
    stack traces), so a long value is kept cut and entries past MAX_LABELS are left out
    (the first in key order kept) rather than the alert refused. Anything else invalid
    (not an object, a value not a string, not storable) is a PayloadError."""
    value = obj.get("annotations")
    if not isinstance(value, dict) or not _to_cut(value):
        return _label_set(obj, "annotations", where, names=False), False
    kept = dict(sorted(value.items())[:MAX_LABELS]) if len(value) > MAX_LABELS else value
    cut = {k: cut_value(v) if isinstance(v, str) else v for k, v in kept.items()}
    truncated = len(kept) < len(value) or any(cut[k] is not kept[k] for k in kept)
    return _label_set({"annotations": cut}, "annotations", where, names=False), truncated


def _to_cut(annotations: dict[str, Any]) -> bool:
    """Whether some of `annotations` would be cut or left out (see _annotations)."""
    if len(annotations) > MAX_LABELS:
        return True
    for value in annotations.values():
        if isinstance(value, str) and len(value) > MAX_VALUE_LENGTH:
            return True
    return False


def fingerprint_of(labels: Mapping[str, str]) -> str:
    """Stand-in when a sender omits `fingerprint`: stable for the same label set."""
    canonical = "\xff".join(f"{k}\xfe{v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def parse_alert(obj: Any, index: int, indexed: tuple[str, ...] = INDEXED_LABELS) -> Alert:
    """One alert of `alerts`; raise PayloadError naming the first bad field."""
    where = f"alerts[{index}]."
    if not isinstance(obj, dict):
        raise PayloadError(f"alerts[{index}]", f"expected an object, got {_kind(obj)}")
    status = _string(obj, "status", where)
    if status not in STATUSES:
        raise PayloadError(f"{where}status", f"must be 'firing' or 'resolved', not {status[:32]!r}")
    labels = _label_set(obj, "labels", where, names=True, indexed=indexed)
    if not labels:
        raise PayloadError(f"{where}labels", "an alert needs at least one label")
    starts_at = parse_timestamp(obj.get("startsAt"), f"{where}startsAt")
    if starts_at is None:
        raise PayloadError(f"{where}startsAt", "must be set (not Go's zero time)")
    ends_at = parse_timestamp(obj.get("endsAt", GO_ZERO_TIME), f"{where}endsAt")
    # Labels are NOT cut like annotations: they are the alert's identity, which
    # strategies match and templates render into targets; a cut value could match a
    # strategy meant for another alert, or collide with one. Such an alert is refused.
    fingerprint = obj.get("fingerprint") or fingerprint_of(labels)
    if not isinstance(fingerprint, str) or not _FINGERPRINT.fullmatch(fingerprint):
        raise PayloadError(f"{where}fingerprint", "expected up to 64 letters and digits")
    annotations, truncated = _annotations(obj, where)
    return Alert(
        status=status,
        labels=labels,
        annotations=annotations,
        starts_at=starts_at,
        ends_at=ends_at,
        fingerprint=fingerprint,
        generator_url=_string(obj, "generatorURL", where, ""),
        truncated=truncated,
    )


def parse_notification(obj: Any, indexed: tuple[str, ...] = INDEXED_LABELS) -> Notification:
    """Validate a decoded webhook body: the notification with its accepted alerts and
    its refused ones; raise PayloadError naming the first bad field when the envelope
    is invalid or every alert is refused.

    `indexed`: the labels whose values the journal keeps in columns (`alertname` and the
    configured service labels), which may hold no NUL."""
    envelope, items = parse_envelope(obj, indexed)
    return with_alerts(envelope, parse_alerts(items, 0, len(items), indexed))


def with_alerts(envelope: Notification, parsed: ParsedAlerts) -> Notification:
    """The envelope with its alerts judged; PayloadError (the first refusal's) when
    there were alerts and none was accepted: a body with nothing to journal is refused
    whole, as a single bad alert always was."""
    if parsed.refused and not parsed.alerts:
        first = parsed.refused[0]
        raise PayloadError(first.field, first.message, first.reason)
    return replace(envelope, alerts=parsed.alerts, refused=parsed.refused)


def parse_envelope(
    obj: Any, indexed: tuple[str, ...] = INDEXED_LABELS
) -> tuple[Notification, list[Any]]:
    """Everything of a decoded webhook body but its alerts, validated (a Notification
    with no alerts), and the alerts as decoded, for parse_alerts: a large notification's
    are parsed a slice at a time. Raises PayloadError naming the first bad field."""
    if not isinstance(obj, dict):
        raise PayloadError("$", f"expected a JSON object, got {_kind(obj)}")
    version = obj.get("version", "4")
    if version != "4":
        raise PayloadError(
            "version", f"only webhook payload version '4' is supported, not {version!r}"
        )
    alerts = obj.get("alerts")
    if not isinstance(alerts, list):
        raise PayloadError("alerts", f"expected a list, got {_kind(alerts)}")
    status = _string(obj, "status", "", "firing")
    if status not in STATUSES:
        raise PayloadError("status", f"must be 'firing' or 'resolved', not {status[:32]!r}")
    truncated = obj.get("truncatedAlerts", 0)
    if isinstance(truncated, float) and truncated.is_integer():
        truncated = int(truncated)  # JSON has one number type: 2.0 is the integer 2 (JSON Schema)
    if isinstance(truncated, bool) or not isinstance(truncated, int):
        raise PayloadError("truncatedAlerts", f"expected an integer, got {_kind(truncated)}")
    if not 0 <= truncated <= MAX_STORED_INT:
        raise PayloadError("truncatedAlerts", f"must be between 0 and {MAX_STORED_INT}")
    envelope = Notification(
        receiver=_string(obj, "receiver", "", ""),
        status=status,
        alerts=(),
        group_key=_string(obj, "groupKey", "", ""),
        truncated_alerts=truncated,
        group_labels=_label_set(obj, "groupLabels", "", names=False),
        common_labels=_label_set(obj, "commonLabels", "", names=False),
        common_annotations=_label_set(obj, "commonAnnotations", "", names=False),
        external_url=_string(obj, "externalURL", "", ""),
        version=version,
    )
    return envelope, alerts


def parse_alerts(
    items: list[Any], start: int, stop: int, indexed: tuple[str, ...] = INDEXED_LABELS
) -> tuple[Alert, ...]:
    """`items[start:stop]` (decoded alerts) judged one by one, each named by its index
    in `items`: the accepted alerts and a Refusal for each refused one (never raises
    for a bad alert)."""
    alerts: list[Alert] = []
    refused: list[Refusal] = []
    for index in range(start, min(stop, len(items))):
        try:
            alerts.append(parse_alert(items[index], index, indexed))
        except PayloadError as exc:
            refused.append(Refusal(index, exc.field, exc.message, exc.reason))
    return ParsedAlerts(tuple(alerts), tuple(refused))
