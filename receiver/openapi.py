"""The OpenAPI 3.1 document of the HTTP API, served at GET /api/v1/openapi.json.

The document is a data file shipped in the package (receiver/openapi.yaml: written by
hand, readable in review), loaded once per process. Its `info.version` is the installed
version (receiver/version.py), so it cannot drift from the release. Two tests keep it
true: tests/unit/test_openapi.py (every Flask route is in it and every path in it is
served) and tests/integration/test_openapi.py (schemathesis against a real
`remediator serve`: each answer's status is documented and its body conforms).
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Any

import yaml

from receiver.version import build_info

#: the document's file, beside this module (package data)
DOCUMENT = "openapi.yaml"


@cache
def document() -> dict[str, Any]:
    """The document as a dict (OpenAPI 3.1: `openapi`, `info`, `paths`, `components`).

    Raises OSError when the file is missing from the installation and yaml.YAMLError
    when it is not valid YAML: both are packaging faults, found by the unit test."""
    text = files("receiver").joinpath(DOCUMENT).read_text(encoding="utf-8")
    loaded = yaml.safe_load(text)
    loaded["info"]["version"] = build_info().version
    return loaded


@cache
def document_json() -> bytes:
    """The document as the UTF-8 JSON body GET /api/v1/openapi.json answers."""
    return json.dumps(document(), ensure_ascii=False).encode()
