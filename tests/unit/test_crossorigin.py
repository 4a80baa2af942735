"""Cross-origin requests refused by Fetch Metadata and Origin (receiver/crossorigin.py),
the cases of Go's net/http CrossOriginProtection."""

from __future__ import annotations

import pytest
from werkzeug.datastructures import Headers

from receiver.crossorigin import cross_origin_refusal


@pytest.mark.parametrize(
    ("method", "headers", "refused"),
    [
        ("GET", {"Sec-Fetch-Site": "cross-site"}, False),  # safe methods change nothing
        ("HEAD", {"Origin": "https://evil.example"}, False),
        ("OPTIONS", {"Sec-Fetch-Site": "cross-site"}, False),
        ("POST", {}, False),  # curl, Alertmanager, scripts: no browser headers
        ("POST", {"Sec-Fetch-Site": "same-origin"}, False),
        ("POST", {"Sec-Fetch-Site": "none"}, False),  # typed by the user
        ("POST", {"Sec-Fetch-Site": "cross-site"}, True),
        ("POST", {"Sec-Fetch-Site": "same-site"}, True),  # another subdomain
        ("DELETE", {"Sec-Fetch-Site": "cross-site"}, True),
        ("POST", {"Host": "rem:9095", "Origin": "https://rem:9095"}, False),
        ("POST", {"Host": "rem:9095", "Origin": "https://evil.example"}, True),
        ("POST", {"Host": "rem:9095", "Origin": "null"}, True),  # sandboxed or file page
        # Sec-Fetch-Site wins over Origin when both are sent
        (
            "POST",
            {"Host": "rem:9095", "Origin": "https://evil", "Sec-Fetch-Site": "same-origin"},
            False,
        ),
    ],
)
def test_cross_origin_rule(method, headers, refused):
    verdict = cross_origin_refusal(method, Headers(headers))
    assert (verdict is not None) == refused, verdict
    if refused:
        assert verdict.startswith("cross-origin request refused")


def test_header_names_ignore_case_and_the_reason_names_the_origin():
    headers = Headers({"host": "rem:9095", "origin": "https://evil.example"})
    assert cross_origin_refusal("post", headers) == (
        "cross-origin request refused (Origin https://evil.example is not rem:9095)"
    )
