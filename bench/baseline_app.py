"""The benchmarks' baseline: `POST /webhook` that only parses the JSON and answers 200.

It runs under the very gunicorn settings of `remediator serve` (BaselineServer is a
RemediatorServer whose app is this one: same bind, worker class, workers, threads,
keep-alive, timeouts), so a ratio against it measures what Remediator adds on top of
HTTP + Flask + JSON: authentication, validation, the journal transaction, planning.

    python -m bench.baseline_app --config FILE --listen HOST:PORT
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from flask import Flask, Response, jsonify, request

from receiver import logs
from receiver.config import load_config, with_overrides
from receiver.server import RemediatorServer, ServeOptions


def create_baseline_app() -> Flask:
    app = Flask("baseline")

    @app.post("/webhook")
    def webhook() -> tuple[Response, int]:
        payload = json.loads(request.get_data())
        return jsonify({"status": "ok", "alerts": len(payload.get("alerts", []))}), 200

    @app.get("/-/ready")
    def ready() -> tuple[str, int]:
        return "Baseline is Ready.\n", 200

    return app


class BaselineServer(RemediatorServer):
    """RemediatorServer's gunicorn settings (load_config is inherited), the baseline app."""

    def load(self) -> Any:
        logs.configure(self.options.log_format)
        return create_baseline_app()

    def _post_worker_init(self, worker: Any) -> None:
        logs.configure(self.options.log_format)  # no dispatcher, no reload handler


def serve_main(server: type[RemediatorServer], description: str) -> None:
    """`--config FILE --listen HOST:PORT`: run `server` (a baseline) as `serve` would."""
    args = argparse.ArgumentParser(description=description)
    args.add_argument("--config", required=True)
    args.add_argument("--listen", required=True)
    parsed = args.parse_args()
    overrides = {"listen": parsed.listen}
    config = with_overrides(load_config(parsed.config), overrides)
    server(ServeOptions(parsed.config, config, overrides)).run()


def main() -> None:
    serve_main(BaselineServer, __doc__.splitlines()[0])


if __name__ == "__main__":
    main()
