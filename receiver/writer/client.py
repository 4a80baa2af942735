"""The worker's side of the journal writer: start it, restart it, talk to it.

WriterProcess starts the writer on a socket in a private directory (forked from the
worker the first time, `python -m receiver.writer.process` on a restart: WriterProcess
says why), waits until it answers, and restarts it if it ever dies (the webhook
answers 503 meanwhile, so Alertmanager retries; nothing accepted is lost because
nothing is accepted before it is committed). Except a large notification the writer
had spooled before it died: its PROGRESS replies carried the 200 already true (the
rest queued in the spool, which the next writer journals), and that is the answer.
WriterIntake is the Intake the webhook uses under `remediator serve`: each worker thread
keeps one connection to it.

A writer can also stop making progress without dying (stopped, or stuck in one
request). StallWatch records what the worker sent it and what it answered; once it has
held a request unanswered for `limits.writer_stall_timeout`, `problem()` says so (and
`/-/healthy` answers 503, so a liveness probe notices), the writer is killed with
SIGKILL and the monitor starts a new one; the requests it held get 503.

Each writer's private directory is named after the worker that owns it
(`remediator-writer-<pid>-*`), so a start removes those left by a killed worker and
never those of a live one.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import json
import logging
import os
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from receiver.config import Config, ConfigError, Limits, Problem
from receiver.intake import Answer, failed
from receiver.store import StoreUnavailable
from receiver.writer import process as writer_process
from receiver.writer.protocol import NOTIFY, PING, RELOAD, STOP, pack_request, read_reply

log = logging.getLogger(__name__)

START_TIMEOUT_S = 30.0
REPLY_TIMEOUT_S = 25.0  # then 503: Alertmanager's retry is better than a hung request
RESTART_DELAY_S = 0.5
DIRECTORY_PREFIX = "remediator-writer-"


class StallWatch:
    """What the worker has asked of one writer and what it has answered (thread-safe).

    The writer answers from one thread, turn by turn, reading every request that has
    arrived before it answers any: so an answer to a request sent at time t shows it got
    past everything sent up to t. The writer holds work when a request sent after that
    mark is unanswered, whether its sender still waits or gave up (reply timeout).
    Times are `time.monotonic()` seconds.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens = itertools.count()
        self._waiting: dict[int, float] = {}  # token -> when sent
        self._abandoned: float | None = None  # oldest request its sender gave up on
        self._mark = float("-inf")  # latest send time of an answered request

    def sent(self, now: float) -> int:
        """Record a request about to be sent at `now`; return the token for its outcome."""
        with self._lock:
            token = next(self._tokens)
            self._waiting[token] = now
            return token

    def answered(self, token: int) -> None:
        with self._lock:
            sent = self._waiting.pop(token, None)
            if sent is None:  # a request to a writer replaced since
                return
            self._mark = max(self._mark, sent)
            if self._abandoned is not None and self._abandoned <= sent:
                self._abandoned = None

    def progressed(self, token: int, now: float) -> None:
        """The writer reported progress on this request (a large notification journaled
        in chunks): it is held from `now` on, not from when it was sent."""
        with self._lock:
            if token in self._waiting:
                self._waiting[token] = now

    def gave_up(self, token: int, timed_out: bool) -> None:
        """The sender stopped waiting: on a timeout the writer still holds the request;
        on a broken connection it has died, and its restart says so."""
        with self._lock:
            sent = self._waiting.pop(token, None)
            if sent is None or not timed_out or sent <= self._mark:
                return
            self._abandoned = sent if self._abandoned is None else min(self._abandoned, sent)

    def held_since(self) -> float | None:
        """When the oldest request the writer holds unanswered was sent, or None."""
        with self._lock:
            held = [sent for sent in self._waiting.values() if sent > self._mark]
            if self._abandoned is not None:
                held.append(self._abandoned)
            return min(held, default=None)

    def reset(self) -> None:
        """A new writer holds nothing yet."""
        with self._lock:
            self._waiting.clear()
            self._abandoned = None
            self._mark = float("-inf")


#: Leaving takes the writer's dispatch process `limits.shutdown_grace`, then up to the
#: dispatcher's KILL_WAIT (10 s) to kill what still runs and journal it; the writer waits
#: for it that long and a little more (dispatch.child_timeout); this is the rest (seconds).
STOP_MARGIN_S = 15.0


def _become_writer(release: Callable[[], None]) -> None:
    """In a forked writer, before anything else: the signals its parent handled back to
    their defaults (run() then sets the writer's own), no wake-up fd (the parent's
    pipe), what `release` closes, stdin from /dev/null (as an executed writer has it),
    and its own process name."""
    signal.set_wakeup_fd(-1)
    for signum in _WORKER_SIGNALS:
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # reloads come as RELOAD frames
    release()
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    with (
        contextlib.suppress(OSError),  # no /proc: the name is only a convenience
        open("/proc/self/comm", "w", encoding="ascii") as comm,
    ):
        comm.write(FORKED_NAME)


def stop_timeout(shutdown_grace: float) -> float:
    """How long the worker waits for the writer to leave before it kills it (seconds):
    longer than the writer's own grace for running actions, so it is never cut short."""
    return shutdown_grace + STOP_MARGIN_S


class ForkedProcess:
    """A child this process forked, with what WriterProcess uses of subprocess.Popen:
    `pid`, `returncode` (negative: the signal that ended it), `poll()`, `wait(timeout)`
    (raises subprocess.TimeoutExpired) and `kill()`. Thread-safe as Popen is: one
    thread may block in wait() while others poll, and the child is reaped once."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._reaping = threading.Lock()

    def poll(self) -> int | None:
        if self.returncode is None and self._reaping.acquire(blocking=False):
            try:  # another thread blocked in wait() holds it: it will reap the child
                self._reap(os.WNOHANG)
            finally:
                self._reaping.release()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if timeout is None:
            with self._reaping:
                while self.returncode is None:
                    self._reap(0)
            return self.returncode
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"journal writer (pid {self.pid})", timeout)
            time.sleep(0.01)
        assert self.returncode is not None
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:  # never signal a pid that may have been reused
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    def _reap(self, flags: int) -> None:
        try:
            pid, status = os.waitpid(self.pid, flags)
        except ChildProcessError:  # reaped elsewhere: its status is lost
            self.returncode = 0 if self.returncode is None else self.returncode
            return
        if pid == self.pid:
            self.returncode = os.waitstatus_to_exitcode(status)


#: The name a forked writer takes (/proc/<pid>/comm; at most 15 bytes): its command
#: line stays the worker's, and ps, top and the tests tell it apart by this name.
FORKED_NAME = "journal-writer"
#: Signals gunicorn's worker handles (or that a child must meet at their defaults);
#: a forked writer puts them back before it does anything else.
_WORKER_SIGNALS = (
    signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH, signal.SIGCHLD,
    signal.SIGTTIN, signal.SIGTTOU, signal.SIGABRT, signal.SIGTERM,
)  # fmt: skip


class WriterProcess:
    """The journal writer child process, kept running for as long as the worker runs.

    The first writer is forked from the worker (start(release=...)) when the worker has
    no thread yet: it then shares the worker's imported modules and config copy-on-write
    (after gc.freeze(), so neither's collector writes to them) instead of importing
    everything again in a fresh interpreter, about 25 MB less PSS in all. Every later start
    (a restart, from the monitor thread, while the worker's threads run) executes
    `python -m receiver.writer.process`: a fork then could inherit a lock another thread
    holds, never to be released.
    """

    def __init__(
        self,
        config_path: str,
        overrides: dict[str, str],
        log_format: str = "text",
        config_text: str = "",
        stall_timeout: float = Limits.writer_stall_timeout,
    ) -> None:
        self.config_path = config_path
        self.overrides = overrides
        self.log_format = log_format
        # The config the worker runs, handed to every (re)start: the file may have been
        # edited since without a reload, and both processes must run the same one.
        self.config_text = config_text
        self.stall_timeout = stall_timeout  # seconds; a reload may change it
        self.watch = StallWatch()
        self._stalled: str | None = None  # why the writer was killed, until one answers
        parent = directory_parent(tempfile.gettempdir(), os.getpid())
        remove_stale_directories(parent)
        prefix = f"{DIRECTORY_PREFIX}{os.getpid()}-"  # the owner: see remove_stale_directories
        self.directory = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))  # mode 0700
        self.socket_path = str(self.directory / "journal.sock")
        self.generation = 0  # bumped on every (re)start: connections to an old one are stale
        self.process: subprocess.Popen[bytes] | ForkedProcess | None = None
        self._stopping = threading.Event()
        self._monitor: threading.Thread | None = None

    def start(self, release: Callable[[], None] | None = None) -> None:
        """Start the writer and wait until it answers; raise if it cannot start.

        With `release`, fork it if this process runs no other thread (the class says
        why): the child first resets the signals its parent handles, then calls
        `release()` to close what it must not hold (the caller's listening sockets,
        pipes, files), then runs the writer, and never returns. Else exec it."""
        self._spawn(release)
        self._monitor = threading.Thread(target=self._keep_running, name="journal-writer")
        self._monitor.daemon = True
        self._monitor.start()
        watchdog = threading.Thread(target=self._watch, name="journal-writer-watchdog")
        watchdog.daemon = True
        watchdog.start()

    def _argv(self) -> list[str]:
        argv = [sys.executable, "-m", "receiver.writer.process", "--socket", self.socket_path]
        argv += ["--config", self.config_path, "--parent", str(os.getpid())]
        argv += ["--log-format", self.log_format]
        if self.config_text:
            argv += ["--config-text", str(self.directory / "config.yml")]
        if "store" in self.overrides:
            argv += ["--store", self.overrides["store"]]
        if "listen" in self.overrides:  # the external URL's default follows it
            argv += ["--listen", self.overrides["listen"]]
        if "external_url" in self.overrides:
            argv += ["--web.external-url", self.overrides["external_url"]]
        return argv

    def _spawn(self, release: Callable[[], None] | None = None) -> None:
        if os.path.exists(self.socket_path):
            os.unlink(self.socket_path)
        if self.config_text:
            text_file = self.directory / "config.yml"
            text_file.write_text(self.config_text, encoding="utf-8")
            text_file.chmod(0o600)
        process: subprocess.Popen[bytes] | ForkedProcess
        if release is not None and threading.active_count() == 1:
            process = self._fork(release)
        else:
            process = subprocess.Popen(self._argv(), stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _answers(self.socket_path):
            if process.poll() is not None:
                raise RuntimeError(f"journal writer exited with {process.returncode} on start")
            if time.monotonic() > deadline:
                process.kill()
                process.wait()
                raise RuntimeError(f"journal writer not ready within {START_TIMEOUT_S:g}s")
            time.sleep(0.02)
        self.watch.reset()
        self.process = process
        self.generation += 1
        self._stalled = None
        how = "forked" if isinstance(process, ForkedProcess) else "executed"
        log.info("journal writer started (pid %d, %s)", process.pid, how)

    def _options(self) -> writer_process.WriterOptions:
        """What _argv says, for a forked writer."""
        return writer_process.WriterOptions(
            socket_path=self.socket_path,
            config_path=self.config_path,
            config_text=self.config_text or None,
            parent=os.getpid(),
            store=self.overrides.get("store"),
            listen=self.overrides.get("listen"),
            external_url=self.overrides.get("external_url"),
            log_format=self.log_format,
        )

    def _fork(self, release: Callable[[], None]) -> ForkedProcess:
        options = self._options()
        gc.freeze()  # what exists now stays shared: neither collector writes to it
        pid = os.fork()
        if pid:
            return ForkedProcess(pid)
        code = 1
        try:  # the child: it must never return into the caller's code
            _become_writer(release)
            code = writer_process.run(options)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            log.exception("forked journal writer failed")
        finally:
            logging.shutdown()
            for stream in (sys.stdout, sys.stderr):  # os._exit flushes nothing
                with contextlib.suppress(Exception):
                    stream.flush()
            os._exit(code)

    def _keep_running(self) -> None:
        while not self._stopping.is_set():
            assert self.process is not None
            code = self.process.wait()
            if self._stopping.is_set():
                return
            log.error("journal writer exited with %s; restarting it", code)
            while not self._stopping.wait(RESTART_DELAY_S):
                try:
                    self._spawn()
                    break
                except (OSError, RuntimeError) as exc:
                    log.error("journal writer did not restart: %s", exc)

    def _watch(self) -> None:
        """Kill a writer that holds work too long; the monitor then starts a new one."""
        while not self._stopping.wait(min(1.0, self.stall_timeout / 4)):
            process = self.process
            if self._stalled is None and process is not None and process.poll() is None:
                problem = self._held_too_long(process)
                if problem:
                    self._stalled = f"{problem}; killed it, a new one is starting"
                    log.error("%s: killing it (SIGKILL) and starting a new one", problem)
                    process.kill()

    def _held_too_long(self, process: subprocess.Popen[bytes] | ForkedProcess) -> str | None:
        held = self.watch.held_since()
        if held is None or time.monotonic() - held <= self.stall_timeout:
            return None
        return (
            f"journal writer (pid {process.pid}) has held a request "
            f"{time.monotonic() - held:.1f}s without answering "
            f"(limits.writer_stall_timeout {self.stall_timeout:g}s)"
        )

    def problem(self) -> str | None:
        """Why the writer is not making progress (for `/-/healthy`), or None if it is."""
        if self._stalled is not None:
            return self._stalled
        process = self.process
        return None if process is None else self._held_too_long(process)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = stop_timeout(30.0)) -> None:
        """Tell the writer to leave (after the batch in hand) and wait up to timeout
        seconds for it (see stop_timeout), then kill it."""
        self._stopping.set()
        process = self.process
        if process is not None and process.poll() is None:
            deadline = time.monotonic() + timeout
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
                    connection.settimeout(timeout)
                    connection.connect(self.socket_path)
                    connection.sendall(pack_request(STOP, time.time()))
                    read_reply(connection)
            except (OSError, ConnectionError) as exc:
                # Already leaving (a SIGTERM to the process group reached it too): its
                # socket is gone, but it may be giving running actions their grace.
                log.info("journal writer not answering STOP (%s); waiting for it", exc)
            try:
                process.wait(max(deadline - time.monotonic(), 0.0))
            except subprocess.TimeoutExpired:
                log.warning("journal writer did not stop within %gs; killing it", timeout)
                process.kill()
                process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


#: Linux's sun_path holds 108 bytes, its terminating NUL included.
MAX_SOCKET_PATH = 107
#: mkdtemp's random suffix and the socket's name, after the directory's prefix.
_SOCKET_TAIL = "-XXXXXXXX/journal.sock"
#: Where the private directory goes when the temp directory's path is too long for a
#: socket path (a deep TMPDIR): the system's own temp directory, short everywhere.
FALLBACK_PARENT = "/tmp"


def directory_parent(temp_dir: str, pid: int) -> str:
    """The directory to make the writer's private directory in: `temp_dir` (normally
    $TMPDIR), unless the socket path inside it would pass MAX_SOCKET_PATH bytes, which
    bind() refuses ("AF_UNIX path too long"); then FALLBACK_PARENT."""
    path = os.path.join(temp_dir, f"{DIRECTORY_PREFIX}{pid}{_SOCKET_TAIL}")
    if len(os.fsencode(path)) <= MAX_SOCKET_PATH:
        return temp_dir
    log.warning(
        "temp directory %s is too deep for a Unix socket path; the journal writer's "
        "socket goes in %s",
        temp_dir,
        FALLBACK_PARENT,
    )
    return FALLBACK_PARENT


def remove_stale_directories(parent: str | None = None) -> list[Path]:
    """Remove the private directories of writers whose worker is dead; return them.

    `remediator-writer-<pid>-*` in `parent` (default: the temp directory) belongs to
    worker <pid>: kept while that pid runs, removed once it is gone (a `kill -9` leaves
    them behind). Only our own real directories are touched, never symlinks or other
    users' ones; names without a pid (older versions) are left alone.
    """
    removed = []
    for path in Path(parent or tempfile.gettempdir()).glob(f"{DIRECTORY_PREFIX}*"):
        owner = path.name[len(DIRECTORY_PREFIX) :].partition("-")[0]
        if not owner.isdigit() or _pid_alive(int(owner)):
            continue
        try:
            info = path.lstat()
        except OSError:
            continue
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            continue
        shutil.rmtree(path, ignore_errors=True)
        log.info("removed %s, left by a journal writer whose worker (pid %s) is gone", path, owner)
        removed.append(path)
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    except OverflowError:  # no such pid can exist; keep what we cannot account for
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """A killed worker whose parent died first may stay a zombie: it has left all the same."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat_file:
            return stat_file.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):  # no /proc here: trust kill(pid, 0)
        return False


def _answers(path: str) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.connect(path)
        return True
    except OSError:
        return False


def _kernel_timeouts(connection: socket.socket, seconds: float) -> None:
    """A blocking socket with the timeout kept by the kernel (a Python-level timeout
    would add a poll() before every send and recv, on the webhook's hot path)."""
    value = struct.pack("ll", int(seconds), int(seconds % 1 * 1_000_000))
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)


class WriterIntake:
    """The webhook's Intake under `remediator serve`: one connection per worker thread."""

    def __init__(self, writer: WriterProcess, timeout: float = REPLY_TIMEOUT_S) -> None:
        self.writer = writer
        self.timeout = timeout
        self._local = threading.local()

    def accept(self, body: bytes, received_at: float) -> Answer:
        try:
            return self._call(pack_request(NOTIFY, received_at, body))
        except StoreUnavailable as exc:
            return failed(exc)

    def reload(self, config: Config) -> None:
        """Have the writer run this config too; raise ConfigError if it would not."""
        try:
            answer = self._call(pack_request(RELOAD, time.time(), config.text.encode("utf-8")))
        except StoreUnavailable as exc:
            raise ConfigError([Problem("", f"the journal writer did not reload: {exc}")]) from exc
        if answer.status != 200:
            try:
                said = json.loads(answer.body)
                reason = said.get("problems") or said["error"]
            except (ValueError, KeyError, AttributeError):
                reason = answer.body.decode("utf-8", "replace")
            raise ConfigError([Problem("", f"the journal writer refused the reload: {reason}")])
        self.writer.config_text = config.text
        self.writer.stall_timeout = config.limits.writer_stall_timeout

    def ping(self) -> None:
        answer = self._call(pack_request(PING, time.time()))
        if answer.status != 200:
            raise StoreUnavailable(f"journal writer answered {answer.status}")

    def _call(self, frame: bytes) -> Answer:
        """Send one frame and read its reply; any failure is StoreUnavailable (503),
        unless the writer had said what is already true (a spooled large notification:
        the fallback body of its PROGRESS replies, a 200)."""
        connection = self._connection()
        watch = self.writer.watch
        token = watch.sent(time.monotonic())
        fallback: list[bytes] = []

        def progressed(body: bytes) -> None:
            watch.progressed(token, time.monotonic())
            if body:
                fallback[:] = [body]

        try:
            connection.sendall(frame)
            answer = read_reply(connection, progressed)
        except (OSError, ConnectionError) as exc:
            # The kernel's timeouts surface as EAGAIN (BlockingIOError).
            watch.gave_up(token, timed_out=isinstance(exc, (BlockingIOError, TimeoutError)))
            self._close()
            if fallback:
                log.warning(
                    "journal writer lost (%s) after it spooled a large notification: "
                    "answering 200, the rest is journaled from the spool",
                    exc,
                )
                return Answer(200, fallback[0])
            raise StoreUnavailable(f"journal writer unavailable: {exc}") from exc
        watch.answered(token)
        return answer

    def _connection(self) -> socket.socket:
        local = self._local
        if getattr(local, "generation", None) != self.writer.generation:
            self._close()
        if getattr(local, "connection", None) is None:
            connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            _kernel_timeouts(connection, self.timeout)
            try:
                connection.connect(self.writer.socket_path)
            except OSError as exc:
                connection.close()
                raise StoreUnavailable(f"journal writer unavailable: {exc}") from exc
            local.connection, local.generation = connection, self.writer.generation
        return local.connection

    def _close(self) -> None:
        connection = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None:
            connection.close()
