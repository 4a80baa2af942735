"""The operator console: server-rendered pages at `/` (Jinja2 templates in templates/,
one small vendored script and stylesheet in static/), served by the receiver itself.

blueprint.py holds what every page shares (security headers, form tokens, rendering);
each page module registers its routes on the blueprint. Importing this package imports
them all, so `console` is complete once imported.
"""

from __future__ import annotations

from receiver.console import (  # noqa: F401 (importing them registers their routes)
    actions,
    breakers,
    incidents,
    overview,
    strategies,
)
from receiver.console.blueprint import console

__all__ = ["console"]
