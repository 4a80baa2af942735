"""`python -m bench`: every benchmark (see bench/run_all.py); exits 1 if a target is missed."""

import sys

from bench.run_all import exit_status, main

sys.exit(exit_status(main()))
