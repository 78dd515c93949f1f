"""A warm worker pool: one long-lived process that has imported the worker forks one child per attempt.

Why: a fresh interpreter per attempt spends a few hundred milliseconds on start-up,
imports and pydantic model building before ffmpeg even starts, which dominates short
jobs (docs/performance.md). The pool server pays that once per run; each attempt is
then a ``fork()`` of an already-warm process.

Isolation is the same as with a fresh process per attempt: every attempt is its own
process in its own session (so its ffmpeg children share its process group), with
its own stderr pipe (its JSON log lines), its own environment and its own exit
status. A crash, a hang or a kill of one attempt touches nothing else; the runner
stops an attempt with SIGTERM and then SIGKILLs its whole process group. If the pool
server itself dies, its running attempts are killed and reported as crashed (they
are retried like any crashed worker) and the next attempt starts a new server.

Protocol, over a ``SOCK_SEQPACKET`` socket pair (one JSON object per message):
runner -> server ``{"id", "argv", "env", "cwd"}`` with the child's stderr as an
attached file descriptor; server -> runner ``{"id", "pid"}`` once forked, then
``{"exit": pid, "code": exit code}`` (negative: killed by that signal) once reaped.
"""

import asyncio
import contextlib
import json
import os
import select
import signal
import socket
import sys
import traceback
from collections.abc import Sequence
from typing import Any

# What every attempt needs; imported once by the server, before any fork.
PRELOAD = ("audioextract.cli", "audioextract.worker.main", "audioextract.worker.job")
MESSAGE_LIMIT = 1024 * 1024
STREAM_LIMIT = 1024 * 1024
# A forked child whose run raised past the worker's own handlers (EXIT_CRASHED).
CHILD_CRASHED = 1


class PoolError(RuntimeError):
    """The pool server could not start an attempt."""


# -- the server (its own process: ``python -m audioextract.local.pool FD MODULE...``) ----


def _child(request: dict[str, Any], err_fd: int, closing: Sequence[int]) -> None:
    """In the forked child: become an isolated worker process and run the command line."""
    rc = CHILD_CRASHED
    try:
        # Signal dispositions as in a fresh interpreter (SIGPIPE stays ignored, as
        # Python sets it, so that a closed socket is an error and not a death).
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for fd in closing:
            os.close(fd)
        # Its own session and process group, as `start_new_session` gave the worker
        # before: a terminal's Ctrl-C reaches the runner only, and a SIGKILL of the
        # group also ends the attempt's ffmpeg.
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        os.dup2(err_fd, 2)
        os.close(devnull)
        os.close(err_fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = ["audio-extract", *request["argv"]]
        from audioextract.cli import main

        rc = main(request["argv"])
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else CHILD_CRASHED
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(rc)


def _warm() -> None:
    """Build what every attempt builds on first use, once, before any fork.

    The models are built on first use (``defer_build``), and argparse compiles its
    patterns when the first parser is made; done here, each forked attempt inherits
    them instead of doing it again (about a millisecond per attempt for argparse).
    """
    from audioextract.api.status import JobError, JobResult
    from audioextract.api.task import Task
    from audioextract.cli import build_parser

    for model in (Task, JobResult, JobError):
        model.model_rebuild()
    build_parser(["worker"]).parse_args(["worker"])


def serve(sock_fd: int, preload: Sequence[str]) -> None:
    """The pool server's loop: fork on request, report exits, stop when the runner goes."""
    import importlib

    for name in preload:
        importlib.import_module(name)
    _warm()
    sock = socket.socket(fileno=sock_fd)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    os.set_blocking(wake_r, False)
    signal.set_wakeup_fd(wake_w)
    # A handler (not SIG_DFL) so that SIGCHLD wakes select() through the wakeup fd.
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    children: set[int] = set()

    def send(message: dict[str, Any]) -> None:
        sock.send(json.dumps(message).encode())

    try:
        while True:
            ready, _, _ = select.select([sock.fileno(), wake_r], [], [])
            if wake_r in ready:
                with contextlib.suppress(BlockingIOError):
                    while os.read(wake_r, 4096):
                        pass
            while children:
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                children.discard(pid)
                send({"exit": pid, "code": os.waitstatus_to_exitcode(status)})
            if sock.fileno() not in ready:
                continue
            data, fds, _, _ = socket.recv_fds(sock, MESSAGE_LIMIT, 1)
            if not data:
                return  # the runner is gone (or done)
            request = json.loads(data)
            if len(fds) != 1:
                for fd in fds:
                    os.close(fd)
                send({"id": request.get("id"), "error": "no stderr descriptor"})
                continue
            pid = os.fork()
            if pid == 0:
                _child(request, fds[0], (sock.fileno(), wake_r, wake_w))
            os.close(fds[0])
            children.add(pid)
            send({"id": request["id"], "pid": pid})
    finally:
        # Nothing may outlive the pool: an attempt without its runner is an orphan.
        for pid in children:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)


# -- the runner's side ---------------------------------------------------------------


class PoolChild:
    """One attempt's process, with the interface of ``asyncio.subprocess.Process`` it needs."""

    def __init__(self, pid: int, stderr: asyncio.StreamReader, ended: asyncio.Future[int]):
        self.pid = pid
        self.stderr = stderr
        self._ended = ended

    @property
    def returncode(self) -> int | None:
        """The exit code (negative: the signal), or None while it runs."""
        return self._ended.result() if self._ended.done() else None

    async def wait(self) -> int:
        """Wait for the child to end; its exit code."""
        return await asyncio.shield(self._ended)

    def send_signal(self, sig: int) -> None:
        """Signal the worker process itself (it forwards SIGTERM to its ffmpeg)."""
        if self._ended.done():
            raise ProcessLookupError(self.pid)
        os.kill(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL the child's whole process group: the worker and its ffmpeg."""
        if self._ended.done():
            raise ProcessLookupError(self.pid)
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            # Forked but not yet in its own group: the pid alone.
            os.kill(self.pid, signal.SIGKILL)

    def end_group(self) -> None:
        """SIGKILL what is left of the child's process group once it has exited."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)


class Pool:
    """The runner's handle on the pool server; start() once, spawn() per attempt, close()."""

    def __init__(self, preload: Sequence[str] = PRELOAD) -> None:
        self.preload = tuple(preload)
        self._proc: asyncio.subprocess.Process | None = None
        self._sock: socket.socket | None = None
        self._reader: asyncio.Task[None] | None = None
        self._next_id = 0
        # request id -> (forked: the pid, ended: the exit code)
        self._spawning: dict[int, tuple[asyncio.Future[int], asyncio.Future[int]]] = {}
        self._running: dict[int, asyncio.Future[int]] = {}
        self._start_lock = asyncio.Lock()

    @property
    def server_pid(self) -> int | None:
        """The pool server's pid while it runs."""
        return self._proc.pid if self._proc is not None else None

    def running_pids(self) -> list[int]:
        """Pids of the attempts running now."""
        return [pid for pid, fut in self._running.items() if not fut.done()]

    async def _ensure(self) -> socket.socket:
        async with self._start_lock:
            if self._sock is not None and self._reader is not None and not self._reader.done():
                return self._sock
            await self._shutdown()
            try:
                ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            except OSError as exc:  # e.g. no SOCK_SEQPACKET for AF_UNIX on this system
                raise PoolError(f"the worker pool cannot start: {exc}") from exc
            try:
                self._proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "audioextract.local.pool",
                    str(theirs.fileno()),
                    *self.preload,
                    pass_fds=(theirs.fileno(),),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.DEVNULL,
                    # Out of the terminal's process group: Ctrl-C is the runner's to handle.
                    start_new_session=True,
                )
            finally:
                theirs.close()
            ours.setblocking(False)
            self._sock = ours
            self._reader = asyncio.create_task(self._read(ours))
            return ours

    async def _read(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                data = await loop.sock_recv(sock, MESSAGE_LIMIT)
                if not data:
                    break
                message = json.loads(data)
                if "exit" in message:
                    fut = self._running.pop(int(message["exit"]), None)
                    if fut is not None and not fut.done():
                        fut.set_result(int(message["code"]))
                    continue
                pending = self._spawning.pop(int(message["id"]), None)
                if pending is None:
                    continue
                forked, ended = pending
                if "pid" in message:
                    # Registered here, before anything else is read: the child's exit
                    # may be the very next message.
                    self._running[int(message["pid"])] = ended
                    if not forked.done():
                        forked.set_result(int(message["pid"]))
                elif not forked.done():
                    forked.set_exception(PoolError(str(message.get("error"))))
        except OSError:
            pass
        finally:
            self._orphaned()

    def _orphaned(self) -> None:
        """The server is gone: its children can no longer be reaped or reported."""
        for forked, _ in self._spawning.values():
            if not forked.done():
                forked.set_exception(PoolError("the worker pool stopped"))
        self._spawning.clear()
        for pid, fut in self._running.items():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            if not fut.done():
                fut.set_result(-signal.SIGKILL)
        self._running.clear()

    async def spawn(self, argv: Sequence[str], env: dict[str, str], cwd: str) -> PoolChild:
        """Start ``audio-extract ARGV`` in a forked child; raises PoolError if it cannot."""
        loop = asyncio.get_running_loop()
        sock = await self._ensure()
        self._next_id += 1
        request_id = self._next_id
        started: asyncio.Future[int] = loop.create_future()
        ended: asyncio.Future[int] = loop.create_future()
        self._spawning[request_id] = (started, ended)
        read_fd, write_fd = os.pipe()
        try:
            body = json.dumps({"id": request_id, "argv": list(argv), "env": env, "cwd": cwd})
            while True:
                try:
                    socket.send_fds(sock, [body.encode()], [write_fd])
                    break
                except BlockingIOError:
                    await asyncio.sleep(0.005)
                except OSError as exc:
                    raise PoolError(f"the worker pool is not reachable: {exc}") from exc
        except BaseException:
            self._spawning.pop(request_id, None)
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        try:
            pid = await started
        except BaseException:
            os.close(read_fd)
            raise
        reader = asyncio.StreamReader(limit=STREAM_LIMIT)
        protocol = asyncio.StreamReaderProtocol(reader)
        await loop.connect_read_pipe(lambda: protocol, os.fdopen(read_fd, "rb", 0))
        return PoolChild(pid, reader, ended)

    async def _shutdown(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        if self._sock is not None:
            # The server sees the end of the socket and exits.
            self._sock.close()
            self._sock = None
        if self._proc is not None:
            proc, self._proc = self._proc, None
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()

    async def close(self) -> None:
        """Stop the server (it SIGKILLs any attempt still running)."""
        await self._shutdown()
        self._orphaned()


def main(argv: Sequence[str]) -> int:
    """Entry point of the server process."""
    serve(int(argv[0]), argv[1:])
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
