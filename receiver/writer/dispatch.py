"""The dispatch process: the Dispatcher's threads in a process of their own, a child of
the journal writer.

Why: the writer journals every notification from one thread, and the dispatcher's
claims, heartbeats and outcomes ran in the same interpreter, so ingest and dispatch
shared one interpreter lock and one core (bench/README.md, Profiles). Forked, they run
on two cores. Their write transactions still meet on the journal: store/sqlite.py
queues every process's writers on a lock file that wakes the next one at once, not in
SQLite's busy handler, which sleeps and polls.

The writer forks it from its main thread before it starts any thread or opens the
journal (so no lock is held and no SQLite connection is carried across the fork, which
SQLite forbids), right after `gc.freeze()`, so the imported modules and the config stay
shared copy-on-write. The child opens its own store. The reconciler stays in the writer.

    journal writer ---- socketpair ---- dispatch process
       WAKE(n)            ->            wake n idle dispatcher threads (n actions planned)
       RELOAD(text)       ->            parse it (config_from_text) and run it
                          <-            RELOADED(1 taken, 0 not)
       STOP(grace)        ->            shutdown(grace), exit 0
                          <-            SILENCE_EXPIRED: the writer reconciles at once
       EOF                <-            the child is gone

A reload is synchronous: the writer waits for RELOADED before it runs the new config
and answers the worker, so an action planned under the new config is never claimed by
a dispatcher still running the old one (which would not know its strategy).

Lifecycle and crash rules:

- The child ignores SIGTERM, SIGINT and SIGHUP (a service manager or a terminal signals
  the whole group; the writer decides when it ends). Handlers that do nothing, not
  SIG_IGN: an ignored signal stays ignored across exec, and the commands it starts
  must be stoppable.
- At its exit the writer sends STOP(grace) and waits for the child to end, bounded by
  `child_timeout(grace)`: the grace, the dispatcher's KILL_WAIT to kill and journal what
  still runs, and a margin, which fits in the worker's `stop_timeout` (client.py). If
  the child outlives that it is killed (SIGKILL), and what it ran is left to the crash
  rule (dispatcher.py).
- EOF on the socketpair in the child (the writer is gone, even by kill -9) is a STOP
  with the config's `limits.shutdown_grace`: no new claims, running actions end (or
  are killed at the end of the grace and journaled so), then it exits. A writer and
  child started meanwhile by the worker may claim new actions: claims are atomic and
  several dispatchers may share a journal.
- EOF in the writer (the child died, even by kill -9) is seen by its selector at once:
  it logs an ERROR and exits non-zero after the batch in hand; the worker restarts the
  writer (client.py), which forks a new child; that child's crash rule adopts what the
  dead one left running once its heartbeats are stale. Nothing accepted is lost: it is
  in the journal.

Frames, both ways: kind (1 byte), a number (float64), body length (uint32), body.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import select
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from receiver.config import Config
from receiver.dispatcher import KILL_WAIT, Dispatcher
from receiver.store import open_store
from receiver.store.checkpoint import Checkpointer

log = logging.getLogger(__name__)

WAKE = 1  # number: actions planned
RELOAD = 2  # body: the config text the writer accepted (utf-8)
STOP = 3  # number: the grace for running actions, seconds
SILENCE_EXPIRED = 4  # child -> writer; nothing else
RELOADED = 5  # child -> writer; number: 1 if it runs the new config, else 0
#: How long the writer waits for RELOADED (parsing a config takes milliseconds).
RELOAD_TIMEOUT_S = 10.0

FRAME = struct.Struct("!BdI")
MAX_BODY = 64 * 1024 * 1024  # far above any config; refuses a corrupt length
#: Past the grace and KILL_WAIT: time for the child to join its threads and exit.
EXIT_MARGIN_S = 3.0
#: The child's exit status when its journal cannot be opened.
CANNOT_START = 2


def child_timeout(grace: float) -> float:
    """How long the writer waits for the child after STOP(grace) before it kills it
    (seconds): the dispatcher's own bound on shutdown(grace), plus EXIT_MARGIN_S."""
    return grace + KILL_WAIT + EXIT_MARGIN_S


def pack(kind: int, number: float = 0.0, body: bytes = b"") -> bytes:
    """One frame (see the module docstring)."""
    return FRAME.pack(kind, number, len(body)) + body


@dataclass(frozen=True)
class Frame:
    kind: int
    number: float
    body: bytes


class FrameReader:
    """Collects bytes from the socketpair and yields the whole frames in them."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        """Raises ValueError on a length no frame has (a corrupt peer)."""
        self._buffer += data
        found = []
        while len(self._buffer) >= FRAME.size:
            kind, number, length = FRAME.unpack_from(self._buffer)
            if length > MAX_BODY:
                raise ValueError(f"not a dispatch frame (kind {kind}, length {length})")
            end = FRAME.size + length
            if len(self._buffer) < end:
                break
            found.append(Frame(kind, number, bytes(self._buffer[FRAME.size : end])))
            del self._buffer[:end]
        return found


# ---------------------------------------------------------------- the writer's side


class DispatchChild:
    """The writer's handle on its dispatch process: the Dispatcher's `wake` as a frame,
    reloads and the stop; `sock` goes in the writer's selector, and `readable()` says
    what the child sent (SILENCE_EXPIRED calls `silence_expired`), or that it is gone."""

    def __init__(self, pid: int, sock: socket.socket) -> None:
        self.pid = pid
        self.sock = sock
        self.silence_expired: Callable[[], None] | None = None
        self.gone = False  # EOF seen: the child has exited (or closed its end)
        self._reader = FrameReader()
        self._status: int | None = None  # its wait status, once reaped
        self._reloaded: bool | None = None  # the answer to the RELOAD in flight

    def wake(self, actions: int = 1) -> None:
        """New actions were planned: the child wakes that many idle threads."""
        self._send(pack(WAKE, float(actions)))

    def reload(self, text: str, timeout: float = RELOAD_TIMEOUT_S) -> str | None:
        """Have the child run this config text, and wait until it does (the frames it
        sends meanwhile are handled as readable() does); None once it runs it, else why
        not. A child that does not answer within `timeout` seconds is killed: the writer
        then leaves and is restarted (see the module docstring)."""
        self._send(pack(RELOAD, 0.0, text.encode("utf-8")))
        self._reloaded = None
        deadline = time.monotonic() + timeout
        while self._reloaded is None and not self.gone:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                log.error("dispatch process (pid %d) did not take the reload; killing it", self.pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                return "the dispatch process did not answer"
            self.readable()
        if self._reloaded:
            return None
        return "the dispatch process is gone" if self.gone else "the dispatch process refused it"

    def readable(self) -> bool:
        """Read what the child sent; False once it is gone (EOF or a broken socket)."""
        try:
            data = self.sock.recv(1 << 16)
            frames = self._reader.feed(data) if data else None
        except (OSError, ValueError) as exc:  # it may still run: end it, to be sure
            log.error("dispatch process (pid %d) connection broken: %s", self.pid, exc)
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            frames = None
        if frames is None:
            self.gone = True
            return False
        for frame in frames:
            if frame.kind == SILENCE_EXPIRED and self.silence_expired is not None:
                self.silence_expired()
            elif frame.kind == RELOADED:
                self._reloaded = frame.number == 1
        return True

    def stop(self, grace: float) -> int | None:
        """Send STOP(grace) and wait up to child_timeout(grace) for the child to exit,
        then kill it (SIGKILL); return its wait status (os.waitpid), None if unknown."""
        if not self.gone:
            self._send(pack(STOP, grace))
        deadline = time.monotonic() + child_timeout(grace)
        while not self.gone:  # not polling: select wakes at its EOF
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                log.error(
                    "dispatch process (pid %d) did not end within %.0fs; killing it",
                    self.pid,
                    child_timeout(grace),
                )
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                break
            self.readable()
        self.sock.close()
        return self.reap()

    def reap(self) -> int | None:
        """Wait for the exited child (it has closed its end, so this is short) and
        return its wait status."""
        if self._status is None:
            with contextlib.suppress(ChildProcessError):
                self._status = os.waitpid(self.pid, 0)[1]
        return self._status

    def _send(self, frame: bytes) -> None:
        try:
            self.sock.sendall(frame)
        except OSError as exc:  # gone: the selector sees its EOF and the writer leaves
            log.warning("could not reach the dispatch process (pid %d): %s", self.pid, exc)


# ---------------------------------------------------------------- the child's side


@dataclass
class _Source:
    """What the Dispatcher reads its config from: swapped whole on RELOAD."""

    config: Config


def fork_dispatcher(config: Config, parse: Callable[[str], Config]) -> DispatchChild:
    """Fork the dispatch process; return the writer's handle on it. Call from the main
    thread before any thread starts and before any store is opened (module docstring).
    `parse` turns a RELOAD's text into a Config (the writer's config_from_text, bound to
    its file and overrides). The child never returns from here. Raises RuntimeError if
    a thread runs already: the child would inherit the locks it holds, never released."""
    if threading.active_count() > 1:
        names = [thread.name for thread in threading.enumerate()]
        raise RuntimeError(f"the dispatch process must be forked before any thread: {names}")
    ours, theirs = socket.socketpair()  # close-on-exec: commands never hold it open
    gc.freeze()  # what is imported now stays shared: the child's GC never writes to it
    pid = os.fork()
    if pid:
        theirs.close()
        log.info("dispatch process started (pid %d)", pid)
        return DispatchChild(pid, ours)
    ours.close()
    code = 1
    try:
        code = _child(theirs, config, parse)
    except BaseException:  # the child must never return into the writer's code
        log.exception("dispatch process failed")
    finally:
        logging.shutdown()
        os._exit(code)


def _ignore(signum: int, frame: Any) -> None:
    """The writer decides when this process ends (see the module docstring)."""


def _child(sock: socket.socket, config: Config, parse: Callable[[str], Config]) -> int:
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, _ignore)
    try:
        store = open_store(config.store)
    except Exception as exc:  # the writer sees the EOF and exits; the worker reports it
        log.error("dispatch process cannot open the journal: %s", exc)
        return CANNOT_START
    store.apply_limits(config.limits)
    source = _Source(config)
    dispatcher = Dispatcher(source, store)
    sending = threading.Lock()  # dispatcher threads report expired silences

    def tell(frame: bytes) -> None:
        with sending, contextlib.suppress(OSError):  # the writer gone: nothing to tell
            sock.sendall(frame)

    def silence_expired() -> None:
        tell(pack(SILENCE_EXPIRED))

    dispatcher.silence_expired = silence_expired
    # SQLite's WAL checkpoints off the commits' path (store/checkpoint.py)
    checkpointer = Checkpointer(store) if hasattr(store, "checkpoint") else None
    if checkpointer is not None:
        checkpointer.start()
    dispatcher.start()
    grace = _serve(sock, source, store, parse, dispatcher, tell)
    dispatcher.shutdown(grace=grace)
    if checkpointer is not None:
        checkpointer.stop()
    store.close()
    sock.close()
    return 0


def _serve(
    sock: socket.socket,
    source: _Source,
    store: Any,
    parse: Callable[[str], Config],
    dispatcher: Dispatcher,
    tell: Callable[[bytes], None],
) -> float:
    """Obey the writer's frames until STOP or EOF; return the grace to shut down with."""
    reader = FrameReader()
    while True:
        try:
            data = sock.recv(1 << 16)
            frames = reader.feed(data) if data else None
        except (OSError, ValueError) as exc:
            log.error("dispatch process lost the journal writer: %s", exc)
            frames = None
        if frames is None:
            log.info("the journal writer is gone; the dispatch process is leaving")
            return source.config.limits.shutdown_grace
        for frame in frames:
            if frame.kind == WAKE:
                dispatcher.wake(int(frame.number))
            elif frame.kind == RELOAD:
                taken = _reload(frame.body.decode("utf-8", "replace"), source, store, parse)
                tell(pack(RELOADED, 1.0 if taken else 0.0))
            elif frame.kind == STOP:
                return frame.number


def _reload(text: str, source: _Source, store: Any, parse: Callable[[str], Config]) -> bool:
    try:
        new = parse(text)
    except Exception as exc:  # the writer parsed it already: should not happen
        log.error("dispatch process could not take the reloaded configuration: %s", exc)
        return False
    source.config = new
    store.apply_limits(new.limits)
    log.info("dispatch process reloaded the configuration (sha256 %s)", new.sha256[:12])
    return True
