"""Where chunked work runs: local worker processes (the default) or Ray actors (``-cluster``), and the scheduler that
feeds them, retries failed tasks (bounded), cancels everything on an error, Ctrl-C or SIGTERM, and hands results back
in task order whatever order they finished in.

A task is ``fn(payload)`` with ``fn`` a module-level function (workers import it by name). Workers are long-lived, so
whatever ``fn`` caches per process (the profile's engines: ``engines.registry.Engines``) loads once per worker, not
per task.
"""
from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from m3cvcav.core.errors import M3cvError, UsageError
from m3cvcav.core.log import get_logger

log = get_logger(__name__)

THREADS_PER_WORKER = 1  # fixed, so results never depend on how many workers share the machine
RETRIES = 2  # a task runs at most 1 + RETRIES times (Av1an: 3 tries a chunk)


class TaskFailed(M3cvError, RuntimeError):
    """A task that failed on every try."""


@dataclass
class Task:
    key: int
    fn: Callable[[Any], Any]
    payload: Any
    tries: int = 0
    what: str = "chunk"


@dataclass
class Done:
    """A finished try: ``result``, or ``error`` (``lost`` when the worker itself died)."""

    task: Task
    result: Any = None
    error: BaseException | None = None
    lost: bool = False


def limit_threads(threads: int = THREADS_PER_WORKER) -> None:
    """Pin the math libraries of this worker process to ``threads`` threads (before any model loads)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)  # torch and the BLAS libraries read these when they load
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    import cv2

    cv2.setNumThreads(threads)


# -- local processes ---------------------------------------------------------------------------------------------

_reply: Connection | None = None  # a local worker's pipe to the parent while a task runs
_reported = 0.0


def report(frames: int) -> None:
    """Tell the parent how many frames the running task has done so far (local workers, at most 4 times a second;
    a no-op elsewhere), for the job's progress line."""
    global _reported
    now = time.monotonic()
    if _reply is None or now - _reported < 0.25:
        return
    _reported = now
    with contextlib.suppress(OSError):
        _reply.send(("progress", frames))


Init = tuple  # (fn, payload) a worker runs once when it starts (e.g. loading the profile's models), or ()


def _warm(init: Init) -> None:
    """Run a worker's start-up call; a failure here is left for the first task to report with its own message."""
    if init:
        try:
            init[0](init[1])
        except Exception as err:  # noqa: BLE001
            log.debug("worker start-up call failed: %s", err)


def _serve(conn: Connection, threads: int, init: Init = ()) -> None:
    """A local worker: run tasks from the parent until it sends None or goes away. Ctrl-C is the parent's to handle."""
    global _reply
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    limit_threads(threads)
    _warm(init)  # while the parent reads the first chunk
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        fn, payload = message
        _reply = conn
        try:
            reply = ("ok", fn(payload))
        except BaseException as err:  # noqa: BLE001  (handed to the parent, which decides)
            reply = ("err", _portable(err), traceback.format_exc())
        _reply = None
        try:
            conn.send(reply)
        except (BrokenPipeError, OSError):
            return


def _portable(err: BaseException) -> BaseException:
    """``err`` if it pickles and unpickles, else a RuntimeError saying what it was."""
    try:
        pickle.loads(pickle.dumps(err))
        return err
    except Exception:  # noqa: BLE001
        return RuntimeError(f"{type(err).__name__}: {err}")


class _Proc:
    def __init__(self, ctx, threads: int, init: Init = ()):
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child, threads, init), daemon=True, name="m3cvcav-worker")
        self.process.start()
        child.close()
        self.task: Task | None = None
        self.frames = 0  # what the running task reported


class LocalPool:
    """``workers`` spawned processes (spawn: no state or threads inherited from the parent), one task each at a time;
    a worker that dies is replaced on the next submit."""

    kind = "local"

    def __init__(self, workers: int, threads: int = THREADS_PER_WORKER, init: Init = (), start: int = 0):
        self.capacity = max(1, workers)
        self._ctx = mp.get_context("spawn")
        self._threads, self._init = threads, init
        self._procs: list[_Proc] = []
        # ``start`` workers begin now (their start-up overlaps the parent's reading), the others when needed
        self._procs = [_Proc(self._ctx, threads, init) for _ in range(min(start, self.capacity))]

    @property
    def partial(self) -> int:
        """Frames the running tasks have reported done."""
        return sum(p.frames for p in self._procs if p.task is not None)

    def submit(self, task: Task) -> None:
        proc = next((p for p in self._procs if p.task is None and p.process.is_alive()), None)
        if proc is None:
            self._procs = [p for p in self._procs if p.task is not None or p.process.is_alive()]
            proc = _Proc(self._ctx, self._threads, self._init)
            self._procs.append(proc)
        proc.task = task
        try:
            proc.conn.send((task.fn, task.payload))
        except OSError:  # it died starting up (e.g. a script without the __main__ guard): wait() reports it lost
            pass

    def wait(self) -> list[Done]:
        busy = [p for p in self._procs if p.task is not None]
        ready = set(wait([p.conn for p in busy] + [p.process.sentinel for p in busy]))
        done = []
        for p in busy:
            if p.conn in ready or p.process.sentinel in ready:
                reply = None
                try:
                    if p.conn.poll():
                        reply = p.conn.recv()
                except (EOFError, OSError):
                    reply = None
                if reply is not None and reply[0] == "progress":
                    p.frames = reply[1]
                    continue
                task, p.task, p.frames = p.task, None, 0
                if reply is None:
                    p.process.join(1)
                    code = p.process.exitcode
                    done.append(Done(task, error=RuntimeError(f"worker process {p.process.pid} died (exit code "
                                                              f"{code})"), lost=True))
                    self._kill(p)
                elif reply[0] == "ok":
                    done.append(Done(task, result=reply[1]))
                else:
                    log.debug("worker %s: %s", p.process.pid, reply[2])
                    done.append(Done(task, error=reply[1]))
        self._procs = [p for p in self._procs if p.process.is_alive() or p.task is not None]
        return done

    @staticmethod
    def _kill(p: _Proc) -> None:
        if p.process.is_alive():
            p.process.kill()
        p.process.join(5)
        p.conn.close()

    def close(self, cancel: bool = False) -> None:
        for p in self._procs:
            if not cancel and p.task is None:
                with contextlib.suppress(OSError):
                    p.conn.send(None)
        for p in self._procs:
            if not cancel:
                p.process.join(10)
            self._kill(p)
        self._procs = []


# -- Ray ------------------------------------------------------------------------------------------------------------

class _RayWorker:
    """A Ray actor: a long-lived worker whose engines load once (the same ``fn`` caches as a local process)."""

    def __init__(self, threads: int, init: Init = ()):
        limit_threads(threads)
        _warm(init)

    def run(self, fn, payload):
        return fn(payload)


class RayPool:
    """Ray actors, one task each at a time. ``address``: ``local`` starts (and on close stops) a private Ray instance,
    ``auto`` joins the running cluster, ``ray://HOST:PORT`` connects a Ray client. Payloads travel through Ray's
    object store, so workers need no shared filesystem. ``gpus``: GPUs each actor asks for (negative: one where the
    cluster has any)."""

    kind = "ray"

    def __init__(self, address: str, workers: int = 0, gpus: float = 0.0, threads: int = THREADS_PER_WORKER,
                 init: Init = ()):
        try:
            import ray
        except ImportError:
            raise UsageError("-cluster needs Ray: pip install 'm3cvcav[cluster]'") from None
        if not (address in ("local", "auto") or address.startswith("ray://")):
            raise UsageError(f"-cluster {address!r}: give local, auto or ray://HOST:PORT")
        self.ray = ray
        self._owns = address == "local"
        if ray.is_initialized():
            self._owns = False
        elif self._owns:
            ray.init(num_cpus=workers or os.cpu_count() or 1, include_dashboard=False, log_to_driver=False,
                     configure_logging=False, runtime_env={"env_vars": {"OMP_NUM_THREADS": str(threads)}})
        else:
            try:
                ray.init(address=address, log_to_driver=False, configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as err:
                raise UsageError(f"-cluster {address}: cannot join the Ray cluster ({err}); start one with "
                                 "`ray start --head`, or use -cluster local") from None
        resources = ray.cluster_resources()
        cpus = int(resources.get("CPU", 1))
        if gpus < 0:  # "one each where the cluster has GPUs"
            gpus = 1.0 if resources.get("GPU", 0) >= 1 else 0.0
        self.capacity = max(1, workers or cpus)
        self._actor_class = ray.remote(num_cpus=1, num_gpus=gpus)(_RayWorker)
        self._threads, self._init = threads, init
        self._idle = [self._actor_class.remote(threads, init) for _ in range(self.capacity)]
        self._running: dict[Any, tuple[Any, Task]] = {}

    def submit(self, task: Task) -> None:
        actor = self._idle.pop() if self._idle else self._actor_class.remote(self._threads, self._init)
        ref = actor.run.remote(task.fn, task.payload)
        self._running[ref] = (actor, task)

    def wait(self) -> list[Done]:
        ray = self.ray
        ready, _ = ray.wait(list(self._running), num_returns=1)
        done = []
        for ref in ready:
            actor, task = self._running.pop(ref)
            try:
                done.append(Done(task, result=ray.get(ref)))
                self._idle.append(actor)
            except ray.exceptions.RayActorError as err:
                done.append(Done(task, error=RuntimeError(f"Ray worker died: {str(err).splitlines()[0]}"),
                                 lost=True))
                self._idle.append(self._actor_class.remote(self._threads, self._init))
            except ray.exceptions.RayTaskError as err:
                cause = err.cause if isinstance(err.cause, BaseException) else RuntimeError(str(err))
                done.append(Done(task, error=cause))
                self._idle.append(actor)
        return done

    def close(self, cancel: bool = False) -> None:
        ray = self.ray
        for actor in self._idle + [a for a, _ in self._running.values()]:
            with contextlib.suppress(Exception):
                ray.kill(actor)
        self._idle, self._running = [], {}
        if self._owns and ray.is_initialized():
            ray.shutdown()


def make_pool(workers: int = 0, cluster: str | None = None, gpus: float = 0.0, init: Init = (),
              tasks: int | None = None) -> LocalPool | RayPool:
    """Ray actors with ``cluster``, else ``workers`` local processes (0: one per core), as many started now as there
    will be ``tasks`` (when known), each running ``init`` once as it starts."""
    if workers < 0:
        raise UsageError(f"-workers {workers}: give a number of worker processes ≥ 1 (0: one per core)")
    if cluster:
        return RayPool(cluster, workers, gpus, init=init)
    n = workers or os.cpu_count() or 1
    return LocalPool(n, init=init, start=n if tasks is None else tasks)


# -- scheduling -----------------------------------------------------------------------------------------------------

@dataclass
class Counters:
    """What the scheduler reports: tasks done, retried."""

    done: int = 0
    retried: int = 0


def run_ordered(pool, tasks: Iterator[Task], *, retries: int = RETRIES, window: int = 0,
                counters: Counters | None = None,
                tick: Callable[[int], None] | None = None) -> Iterator[tuple[Task, Any]]:
    """Run ``tasks`` (keys 0, 1, 2, … in order) on ``pool``; yield ``(task, result)`` in key order. A failed try is
    retried up to ``retries`` times on a fresh or other worker (an ``M3cvError`` raised by the task itself — a bad
    option, a model missing — is not: it is the same on every try). At most ``window`` tasks (default 2 per worker)
    run or wait ahead of the next one to hand back. Any error, Ctrl-C or closing the generator early cancels
    every worker. ``tick`` is called after every wait with the frames running tasks reported (local workers)."""
    counters = counters or Counters()
    window = window or 2 * pool.capacity + 1
    results: dict[int, tuple[Task, Any]] = {}
    again: deque[Task] = deque()
    upcoming: Task | None = None
    exhausted = False
    running = 0
    next_key = 0
    try:
        while True:
            while running < pool.capacity:
                if again:
                    task = again.popleft()
                else:
                    if upcoming is None and not exhausted:
                        upcoming = next(tasks, None)
                        exhausted = upcoming is None
                    if upcoming is None or upcoming.key - next_key >= window:
                        break
                    task, upcoming = upcoming, None
                pool.submit(task)
                running += 1
            if running == 0:
                break
            if upcoming is None and not exhausted:  # prepare the next task while the workers run
                upcoming = next(tasks, None)
                exhausted = upcoming is None
            for done in pool.wait():
                running -= 1
                if done.error is None:
                    counters.done += 1
                    results[done.task.key] = (done.task, done.result)
                    continue
                task = done.task
                if isinstance(done.error, M3cvError) and not done.lost:
                    raise done.error
                task.tries += 1
                if task.tries > retries:
                    raise TaskFailed(f"{task.what} {task.key} failed {task.tries} times, last: {done.error}; "
                                     "rerun with -loglevel debug for the worker's traceback")
                counters.retried += 1
                log.warning("%s %d failed (%s): retrying (%d of %d)", task.what, task.key, done.error, task.tries,
                            retries)
                again.append(task)
            if tick is not None:
                tick(getattr(pool, "partial", 0))
            while next_key in results:
                yield results.pop(next_key)
                next_key += 1
    except BaseException:
        pool.close(cancel=True)
        raise
    pool.close()


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread like Ctrl-C so every output (and every worker) is stopped the
    same way; the command line exits 128 + ``signum``, as FFmpeg does."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


_received: int | None = None  # the stop signal this process received, if any


def _stop(signum: int, frame) -> None:
    global _received
    _received = signum
    for sig in STOP_SIGNALS + (signal.SIGINT,):  # a second signal must not cut the clean-up short
        signal.signal(sig, signal.SIG_IGN)
    raise Terminated(signum) if signum != signal.SIGINT else KeyboardInterrupt()


def received_stop() -> KeyboardInterrupt | None:
    """The stop (:class:`Terminated`, or ``KeyboardInterrupt`` for SIGINT) raised inside :func:`signals_as_interrupts`,
    if any. A signal that lands while FFmpeg reads or writes a Python file (a pipe) raises in a callback whose exception
    PyAV can only print; FFmpeg then reports an I/O error. The command line asks this before reporting that error."""
    if _received is None:
        return None
    return KeyboardInterrupt() if _received == signal.SIGINT else Terminated(_received)


@contextlib.contextmanager
def signals_as_interrupts() -> Iterator[None]:
    """Inside the block SIGTERM/SIGHUP raise :class:`Terminated` in the main thread, so a terminated run cancels its
    workers and leaves no output as Ctrl-C does. The one SIGTERM path: the command line holds it for the whole run,
    a chunked job of the API for the job; a nested block keeps the outer one. SIGINT keeps raising
    ``KeyboardInterrupt``, through the same handler where Python's default was in place, so that every stop is
    recorded for :func:`received_stop`. Every handler (and ``sys.excepthook``/``unraisablehook``) is restored on exit."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) is _stop:
        yield
        return
    global _received
    saved = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS + (signal.SIGINT,)}
    hooks = sys.excepthook, sys.unraisablehook
    _received = None
    for sig in STOP_SIGNALS + ((signal.SIGINT,) if saved[signal.SIGINT] is signal.default_int_handler else ()):
        signal.signal(sig, _stop)
    sys.excepthook, sys.unraisablehook = _quiet_stops(hooks[0]), _quiet_stops(hooks[1])
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        sys.excepthook, sys.unraisablehook = hooks
        _received = None


def _quiet_stops(hook: Callable[..., Any]) -> Callable[..., Any]:
    """``hook`` (sys.excepthook or sys.unraisablehook), silent for the stop a signal raised inside a C callback that
    could not pass it on (PyAV's file callbacks print it): the run reports that stop once, in its own words."""

    def quiet(*args: Any) -> None:
        error = args[1] if len(args) == 3 else getattr(args[0], "exc_value", None)
        if _received is None or not isinstance(error, KeyboardInterrupt):
            hook(*args)

    return quiet


def descendants(pid: int) -> list[int]:
    """Every process under ``pid`` (Linux /proc): a job's local workers are its children, Ray's actors its
    grandchildren (for measuring them, and for checking that none is left)."""
    parents: dict[int, list[int]] = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            ppid = next(int(line.split()[1]) for line in status.read_text().splitlines() if line.startswith("PPid:"))
        except (OSError, StopIteration, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(status.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out
