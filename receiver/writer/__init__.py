"""The journal writer: a child process of the HTTP worker that decodes and journals
webhook notifications (see process.py for why, client.py for the worker's side)."""
