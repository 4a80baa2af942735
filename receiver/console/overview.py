"""The console's overview at `/`: health, MTTR and availability per service (the figures
of /api/v1/stats and /metrics), open incidents, actions awaiting approval, running and
waiting (with what holds them), breakers not closed and fleets in a wave.

Each section shows at most SECTION_ROWS rows with how many there are and a link to the
full list; an empty section says so (it never disappears). The services' full list is
the overview itself with `?all=services` (every service of /api/v1/stats, worst first:
the label bound, limits.max_label_values, keeps them few); any other `all` is a 400.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode

from flask import request

from receiver import fleetrun
from receiver.console.blueprint import app_state, console, page
from receiver.console.queries import BadQuery
from receiver.stats import orchestrator_stats
from receiver.store import overview as journal
from receiver.store.listing import PageBounds

#: Rows shown per section.
SECTION_ROWS = 10
#: The `all` values the overview takes: the sections it then shows whole.
WHOLE_SECTIONS = ("services",)
#: Fleets looked at for a wave.
MAX_FLEETS = 500
#: How bad each health is: the worst services first.
HEALTH_ORDER = {"critical": 0, "degraded": 1, "unhealthy": 2, "healthy": 3}


@console.app_template_global()
def contract_url(path: str, **args: Any) -> str:
    """The URL of a console page by its path in the console's URL contract (`/actions/7`,
    `/breakers`), with `args` as its query: pages another module serves are linked by
    the URL the contract fixes, not by their view's argument names."""
    query = f"?{urlencode(args)}" if args else ""
    return f"{request.script_root}{path}{query}"


def services(stats: dict[str, Any]) -> list[dict[str, Any]]:
    """The services of orchestrator_stats, worst health first, then by name: each
    {name, health, incidents, mttr_seconds, availability}."""
    rows = [{"name": name, **figures} for name, figures in stats.get("services", {}).items()]
    return sorted(rows, key=lambda row: (HEALTH_ORDER.get(row["health"], 4), row["name"]))


@console.get("/")
def overview() -> tuple[str, int]:
    """What needs attention now, each section bounded (`?all=services`: every service)."""
    whole = request.args.get("all") or None
    if whole is not None and whole not in WHOLE_SECTIONS:
        raise BadQuery("all", f"all must be one of {', '.join(WHOLE_SECTIONS)}")
    state = app_state()
    config = state.config
    now = time.time()
    stats = orchestrator_stats(state.store, config, now)
    strategies = {s.name: s for s in config.strategies}
    bounds = PageBounds(SECTION_ROWS, 2**62, 1024)
    firing = state.store.list_incidents(
        status="firing", service=None, alertname=None, limit=SECTION_ROWS, offset=0, bounds=bounds
    )

    def read(tx: Any) -> dict[str, Any]:
        fleets = fleetrun.page(tx, strategies, PageBounds(MAX_FLEETS, 2**62, 1024), 0, now)
        in_wave = [view for view in fleets.items if view.get("wave")]
        return {
            "approvals": journal.pending_approvals(tx, SECTION_ROWS),
            "running": journal.running(tx, SECTION_ROWS),
            "waiting": journal.waiting(tx, SECTION_ROWS),
            "breakers": journal.open_breakers(tx, SECTION_ROWS),
            "fleets": (in_wave[:SECTION_ROWS], len(in_wave)),
        }

    sections = state.store.look(read)
    all_services = services(stats)
    return page(
        "overview.html",
        now=now,
        services=all_services if whole == "services" else all_services[:SECTION_ROWS],
        services_total=len(all_services),
        window=stats.get("window_seconds"),
        firing=firing.items,
        firing_total=firing.total,
        **sections,
    )
