"""The console's strategies: every configured strategy as it is configured (matchers,
action, executor, target template, cooldown, breaker, verify, approval, runbook steps,
fleet; explain.py strategy_facts), and the explain form: labels in, what would happen
out, the same text `remediator explain` prints (explain.py).

    GET /strategies                       console.strategies
    GET /strategies?labels=...&annotations=...   the same, with the explain result

The form is a GET: it changes nothing and journals nothing. Its `labels` (and optional
`annotations`) are one `name=value` per line; a bad line answers 400 with the error
and the form as typed, and nothing else.
"""

from __future__ import annotations

from datetime import UTC, datetime

from flask import request

from receiver import explain
from receiver.console.blueprint import app_state, console, page
from receiver.matchers import MatcherError


@console.get("/strategies")
def strategies() -> tuple[str, int]:
    """The strategies, and the explain form's result when labels were given."""
    config = app_state().config
    labels_text = request.args.get("labels")
    annotations_text = request.args.get("annotations", "")
    result = error = None
    if labels_text is not None:
        try:
            labels = explain.parse_label_lines(labels_text)
            annotations = explain.parse_label_lines(annotations_text, "annotation")
            if not labels:
                raise MatcherError("give at least one label, as name=value on its own line")
        except MatcherError as exc:
            error = str(exc)
        else:
            result = explain.explain(config, labels, annotations, datetime.now(UTC)).text()
    return page(
        "strategies.html",
        400 if error else 200,
        strategies=[explain.strategy_facts(config, s) for s in config.strategies],
        labels_text=labels_text or "",
        annotations_text=annotations_text,
        result=result,
        error=error,
    )
