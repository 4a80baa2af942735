"""Reading console pages in tests without a browser: the elements carrying a
`data-testid`, with their attributes and text (the stdlib's html.parser, which decodes
entities as a browser does), and the hidden form token."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser

#: Elements without an end tag.
VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}
)


@dataclass
class Element:
    """An element as parsed: its tag, attributes (entities decoded) and text (all text
    inside it, decoded)."""

    tag: str
    attrs: dict[str, str]
    text: str = ""
    children: list[Element] = field(default_factory=list)


class _Scan(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[Element] = []
        self.all: list[Element] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {name: value or "" for name, value in attrs})
        self.all.append(element)
        if tag not in VOID:
            self.open.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.all.append(Element(tag, {name: value or "" for name, value in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for index in range(len(self.open) - 1, -1, -1):
            if self.open[index].tag == tag:
                del self.open[index:]
                return

    def handle_data(self, data: str) -> None:
        for element in self.open:
            element.text += data


def elements(html: str) -> list[Element]:
    """Every element of the page, in document order."""
    scan = _Scan()
    scan.feed(html)
    scan.close()
    return scan.all


def by_testid(html: str, testid: str) -> list[Element]:
    """The elements whose data-testid is `testid`, in document order."""
    return [e for e in elements(html) if e.attrs.get("data-testid") == testid]


def one(html: str, testid: str) -> Element:
    """The one element with this data-testid (AssertionError when not exactly one)."""
    found = by_testid(html, testid)
    assert len(found) == 1, f"{len(found)} elements with data-testid={testid!r}"
    return found[0]


def form_token(html: str) -> str:
    """The first csrf_token a page's forms carry."""
    for element in elements(html):
        if element.tag == "input" and element.attrs.get("name") == "csrf_token":
            return element.attrs["value"]
    raise AssertionError("the page has no form token")


def links(html: str, rel: str) -> list[str]:
    """The href of every <a rel=...> of the page."""
    return [e.attrs["href"] for e in elements(html) if e.tag == "a" and e.attrs.get("rel") == rel]
