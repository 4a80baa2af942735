"""The operator console: server-rendered pages at `/` (Jinja2 templates in templates/,
one small vendored script and stylesheet in static/), served by the receiver itself.

blueprint.py holds what every page shares (security headers, form tokens, rendering);
each page module registers its routes on the blueprint. Importing this package imports
them all, so `console` is complete once imported.
"""

from __future__ import annotations

from receiver.console import incidents, overview  # noqa: F401  (register their routes)
from receiver.console.blueprint import console

__all__ = ["console"]
