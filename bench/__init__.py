"""Benchmarks of Remediator (not tests; `make bench` or `python -m bench`).

Every figure is a ratio against a baseline measured in the same run on the same
machine: a Flask endpoint under the same gunicorn settings that only parses the JSON
and answers 200 (bench/baseline_app.py). Machines here are noisy; ratios travel.

    python -m bench.ingest   [--quick] [--out DIR]   throughput into POST /webhook (wrk)
    python -m bench.latency  [--quick] [--out DIR]   p50/p99 at 200 notifications/s
    python -m bench.storm    [--quick] [--out DIR]   10,000 alerts: fire, re-send, resolve
    python -m bench          [--quick] [--out DIR]   all three, one summary
"""
