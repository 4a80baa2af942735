"""The OpenAPI document (receiver/openapi.yaml) against the app that serves it: every
route Flask serves is documented and every documented path is served, with the same
methods; the enums the read API validates are the journal's own."""

from __future__ import annotations

import re
from pathlib import Path

import jsonschema_rs
import pytest
from flask import Flask
from schemathesis.specs.openapi.definitions import OPENAPI_31

from receiver.app import AppState, create_app
from receiver.config import parse_config
from receiver.openapi import document, document_json
from receiver.store.base import ACTION_STATUSES, INCIDENT_STATUSES
from receiver.store.sqlite import SqliteStore
from receiver.version import build_info
from receiver.webhook import PATH as WEBHOOK_PATH

#: methods Flask adds to every route by itself (HEAD to GET, OPTIONS to all)
IMPLICIT = {"HEAD", "OPTIONS"}
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    config = parse_config("executors: {logger: {type: log}}\n", base_dir=tmp_path)
    return create_app(AppState(config, SqliteStore(f"sqlite:///{tmp_path / 'journal.db'}")))


#: Flask routes whose one variable the document writes as its parts: a breaker's key
#: is `<strategy>/<target>`, taken whole by a path converter (a target may hold `/`)
SPLIT = {"/api/v1/breakers/{key}/reset": "/api/v1/breakers/{strategy}/{target}/reset"}


def openapi_path(rule: str) -> str:
    """Flask's `/api/v1/incidents/<incident_id>` as OpenAPI writes it:
    `/api/v1/incidents/{incident_id}` (and SPLIT's variables as their parts)."""
    path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)
    return SPLIT.get(path, path)


def served(app: Flask) -> dict[str, set[str]]:
    """path -> methods of every route the app serves: Flask's url_map and the webhook,
    answered at the WSGI layer in front of Flask (receiver/webhook.py). The console's
    HTML pages (blueprint `console`) are for people, not part of the API."""
    routes: dict[str, set[str]] = {WEBHOOK_PATH: {"POST"}}
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("console."):
            continue
        methods = set(rule.methods or ()) - IMPLICIT
        routes.setdefault(openapi_path(rule.rule), set()).update(methods)
    return routes


def documented() -> dict[str, set[str]]:
    return {
        path: {method.upper() for method in item if method in HTTP_METHODS}
        for path, item in document()["paths"].items()
    }


def test_every_served_route_is_documented_and_every_documented_path_is_served(app):
    assert served(app) == documented()


def test_the_document_serves_itself_and_is_openapi_3_1():
    doc = document()
    assert doc["openapi"] == "3.1.0"
    assert "/api/v1/openapi.json" in doc["paths"]
    assert doc["info"]["version"] == build_info().version


def test_the_document_is_valid_against_the_openapi_3_1_schema():
    """The OpenAPI Initiative's schema of 3.1 documents, as schemathesis ships it."""
    errors = [
        str(e)[:300] for e in jsonschema_rs.Draft202012Validator(OPENAPI_31).iter_errors(document())
    ]
    assert errors == []


def test_status_codes_are_strings_and_every_operation_documents_its_answers():
    """YAML reads an unquoted 200 as an integer, which OpenAPI does not allow."""
    for path, item in document()["paths"].items():
        for method, operation in item.items():
            codes = list(operation["responses"])
            assert codes, f"{method} {path} documents no answer"
            assert all(isinstance(code, str) for code in codes), f"{method} {path}: {codes}"


def test_status_enums_are_the_journals_own():
    schemas = document()["components"]["schemas"]
    assert tuple(schemas["ActionStatus"]["enum"]) == ACTION_STATUSES
    assert tuple(schemas["IncidentStatus"]["enum"]) == INCIDENT_STATUSES


def test_every_reference_resolves():
    doc = document()
    text = document_json().decode()
    for ref in set(re.findall(r'"\$ref": "#/([^"]+)"', text)):
        node = doc
        for part in ref.split("/"):
            assert part in node, f"#/{ref} does not resolve"
            node = node[part]


def test_get_openapi_json_answers_the_document(app):
    response = app.test_client().get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == document()
