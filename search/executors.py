"""Where trials run: in this process, in local worker processes, or on a Dask cluster.

Every executor takes trial specs (plain data) and hands back finished records one at
a time, as they finish. A trial is ``search.trial.record_of(plain_scenario, spec)`` (a
search trial, or a final network's test measurement), so a worker needs only the
package and the data, not the driver's state.

- :class:`Sequential`: one trial at a time, here (the default).
- :class:`Processes`: ``--workers N`` local processes (``concurrent.futures``). A
  worker that dies takes the pool with it; its trials are retried on a fresh pool, up
  to ``retries`` times each, then recorded as failed.
- :class:`DaskExecutor`: ``--dask tcp://HOST:PORT`` joins a running scheduler,
  ``--dask local`` starts a ``LocalCluster``. A worker that dies has its trials
  rescheduled by Dask; a trial that kills ``allowed-failures`` workers is recorded as failed.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import logging
import multiprocessing
import os
import signal
import time
from typing import Any, Optional, Protocol

from .codesign_trial import record_of
from .records import TrialRecord, TrialSpec
from .trial import error_reason, failed_record


class ClusterError(RuntimeError):
    """A Dask cluster that cannot run trials (found before any is submitted)."""


class Executor(Protocol):
    """What an experiment needs of an executor: room for ``capacity`` trials at a time,
    and the finished records one at a time, as they finish."""

    name: str
    capacity: int

    def submit(self, spec: TrialSpec) -> None: ...

    def pending(self) -> int:
        """Trials submitted whose record has not been taken yet."""

    def next_finished(self) -> TrialRecord:
        """The next finished trial's record (waits for one); a trial that raised is a failed record."""

    def close(self) -> None: ...


def execute(plain: dict, spec: TrialSpec, device: Optional[str] = None) -> TrialRecord:
    """The trial as a worker runs it: plain data in, plain data out (the trial sets its
    own torch thread count, ``execution.threads_per_trial``)."""
    record = record_of(plain, spec, device=device, progress=False)
    record["worker"] = f"{os.uname().nodename}:{os.getpid()}"
    return record


def warning_line(message, category, filename, lineno, line=None) -> str:
    """A warning as a run's other lines read (``warning: ...``), not a source location."""
    return f"warning: {message}\n"


def worker_setup(driver: Optional[int] = None) -> None:
    """Run once in every worker process, before its first trial. ``driver``: the pid of
    the process that started the pool (default: this process's parent now).

    - Ctrl-C: a terminal sends it to every process of the foreground group, and each
      worker would print its own KeyboardInterrupt traceback. A worker just ends
      (the signal's default action); the driver says how to resume.
    - tqdm's lock: by default a multiprocessing semaphore, which a worker ended that way
      leaks ("resource_tracker: There appear to be 1 leaked semaphore objects"). A
      worker's trials run with their bars off, so a thread lock is enough.
    - The driver's end: the worker ends with it (:func:`_exit_with_parent`).
    - Warnings (a layer left digital) print as the driver's do (:func:`warning_line`).
    """
    import threading
    import warnings

    from tqdm import tqdm

    signal.signal(signal.SIGINT, signal.SIG_DFL)
    tqdm.set_lock(threading.RLock())
    warnings.formatwarning = warning_line
    _exit_with_parent(driver)


def _exit_with_parent(parent: Optional[int] = None, every: float = 0.5) -> None:
    """End this worker within ``every`` seconds of its parent's end, however that ends:
    a killed driver (SIGKILL, SIGTERM) cannot stop its pool, and an idle worker would
    wait on the pool's queue for ever, holding its memory (and the resource tracker).
    ``parent``: the driver's pid, known before the worker's imports: a driver killed
    while they ran has already handed the worker to another parent when this starts."""
    import threading

    parent = os.getppid() if parent is None else parent

    def watch() -> None:
        while os.getppid() == parent:  # a child whose parent died is given another one
            time.sleep(every)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


class Sequential:
    """Trials one after another in this process (progress bars for epochs and chips)."""

    name = "sequential"
    capacity = 1

    def __init__(self, plain: dict, device: Optional[str] = None, progress: bool = True):
        self.plain, self.device, self.progress = plain, device, progress
        self.queue: list[TrialSpec] = []

    def submit(self, spec: TrialSpec) -> None:
        self.queue.append(spec)

    def pending(self) -> int:
        return len(self.queue)

    def next_finished(self) -> TrialRecord:
        spec = self.queue.pop(0)
        return record_of(self.plain, spec, device=self.device, progress=self.progress)

    def close(self) -> None:
        self.queue.clear()


class _Futures:
    """The futures plumbing of the parallel executors: submitted trials by future,
    finished records in the order they arrive. A subclass waits (``_wait``) and says
    which errors mean a dead worker whose trials it runs again (``_recover``)."""

    def __init__(self) -> None:
        self.futures: dict[Any, TrialSpec] = {}
        self.ready: list[TrialRecord] = []

    def pending(self) -> int:
        return len(self.futures) + len(self.ready)

    def next_finished(self) -> TrialRecord:
        while not self.ready:
            lost = []
            for future in self._wait(list(self.futures)):
                spec = self.futures.pop(future)
                try:
                    self.ready.append(future.result())
                except Exception as e:  # noqa: BLE001 - the trial's record says what happened
                    if self._worker_died(e):
                        lost.append(spec)
                    else:  # e.g. a result that cannot be unpickled, Dask's KilledWorker
                        self.ready.append(failed_record(spec, error_reason(e)))
            if lost:
                self._recover(lost)
        return self.ready.pop(0)

    def _wait(self, futures: list) -> set:
        raise NotImplementedError

    def _worker_died(self, error: Exception) -> bool:
        return False

    def _recover(self, lost: list[TrialSpec]) -> None:
        raise NotImplementedError


class Processes(_Futures):
    """``workers`` local processes (spawned: fresh interpreters)."""

    name = "processes"

    def __init__(self, plain: dict, workers: int, device: Optional[str] = None, retries: int = 2):
        super().__init__()
        self.plain, self.device, self.retries = plain, device, retries
        self.capacity = workers
        self.attempts: dict[str, int] = {}
        self.pool = self._new_pool()

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        # spawn: a fresh interpreter per worker (no forked torch/OpenMP state)
        return cf.ProcessPoolExecutor(self.capacity, mp_context=multiprocessing.get_context("spawn"),
                                      initializer=worker_setup, initargs=(os.getpid(),))

    def submit(self, spec: TrialSpec) -> None:
        try:
            future = self.pool.submit(execute, self.plain, spec, self.device)
        except cf.process.BrokenProcessPool:  # a worker died since the last result
            self._recover([])
            future = self.pool.submit(execute, self.plain, spec, self.device)
        self.attempts[spec["id"]] = self.attempts.get(spec["id"], 0) + 1
        self.futures[future] = spec

    def _wait(self, futures: list) -> set:
        done, _ = cf.wait(futures, return_when=cf.FIRST_COMPLETED)
        return done

    def _worker_died(self, error: Exception) -> bool:
        return isinstance(error, cf.process.BrokenProcessPool)

    def _recover(self, broken: list[TrialSpec]) -> None:
        """A worker died: every trial in flight is lost with the pool. Retry them on a
        new pool (up to ``retries`` times each), else record them as failed."""
        broken += list(self.futures.values())
        self.futures.clear()
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.pool = self._new_pool()
        for spec in broken:
            if self.attempts[spec["id"]] > self.retries:
                reason = f"a worker process died while running it ({self.attempts[spec['id']]} attempts)"
                self.ready.append(failed_record(spec, reason))
            else:
                self.submit(spec)

    def close(self) -> None:
        """End the pool, and wait until its workers and its manager thread have. Trials
        still running (Ctrl-C, SIGTERM, an error) are not waited for: their workers are
        ended (SIGTERM) first. May be called twice (the experiment's finally, then the
        interruption's handler)."""
        if self.futures:
            for process in list((self.pool._processes or {}).values()):
                if process.is_alive():
                    process.terminate()
            self.futures.clear()
        self.pool.shutdown(wait=True, cancel_futures=True)


def _worker_setup_plugin():
    """A Dask worker plugin that runs :func:`worker_setup` in every worker, also in one
    that replaces a dead worker (defined here so distributed is imported only when used)."""
    from distributed import WorkerPlugin

    class WorkerSetup(WorkerPlugin):
        def setup(self, worker) -> None:  # in the worker process's main thread (its event loop)
            worker_setup()
            # a trial cancelled as the cluster closes (SIGTERM to the driver) is no news: one warning each
            logging.getLogger("distributed.worker.state_machine").setLevel(logging.ERROR)

    return WorkerSetup()


class DaskExecutor(_Futures):
    """Trials as Dask futures on a cluster: ``address`` of a running scheduler
    (``tcp://HOST:PORT``) or ``"local"`` for a ``LocalCluster`` of ``workers`` processes."""

    name = "dask"

    def __init__(self, plain: dict, address: str, workers: Optional[int] = None, device: Optional[str] = None,
                 timeout: float = 10.0):
        from distributed import Client, LocalCluster

        super().__init__()
        self.plain, self.device = plain, device
        self.cluster = None
        self._quiet = contextlib.ExitStack()
        if address == "local":
            from distributed.utils import silence_logging_cmgr

            # our own cluster's chatter is not the user's business, least of all the
            # INFO tracebacks of comms to workers that a Ctrl-C just ended; errors show
            self._quiet.enter_context(silence_logging_cmgr(logging.ERROR))
            n = workers or max(1, os.cpu_count() or 1)
            self.cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                                        dashboard_address=None)
            self.client = Client(self.cluster)
            # this cluster's workers are ours to set up (a remote cluster's are not)
            self.client.register_plugin(_worker_setup_plugin(), name="search-worker-setup")
        else:
            try:
                self.client = Client(address, timeout=timeout)
            except OSError as e:
                raise ConnectionError(f"cannot reach the Dask scheduler at {address}: {e}") from None
        n_workers = len(self.client.scheduler_info().get("workers", {}))
        if n_workers == 0:
            self.client.wait_for_workers(1, timeout=timeout)
            n_workers = len(self.client.scheduler_info().get("workers", {}))
        if address != "local":
            self._check_environment(address)
        self.capacity = max(1, sum(w.get("nthreads", 1) for w in self.client.scheduler_info()["workers"].values()))
        self.n_workers = n_workers

    def _check_environment(self, address: str) -> None:
        """The scheduler (it unpickles the task graph) and every worker must import this
        project; otherwise each trial would fail with Dask's "Error during
        deserialization of the task graph". Checked before anything is written."""

        def probe() -> Optional[str]:  # nested, so Dask ships it by value: it needs nothing there
            import importlib

            for package in ("search", "crossbar", "models"):
                try:
                    importlib.import_module(package)
                except Exception as e:  # noqa: BLE001 - whatever stops the import
                    return f"{type(e).__name__}: {e}"
            return None

        on_scheduler = self.client.run_on_scheduler(probe)
        on_workers = self.client.run(probe)
        failing = [r for r in on_workers.values() if r]
        where = (["the scheduler"] if on_scheduler else []) + (
            [f"{len(failing)} of {len(on_workers)} workers"] if failing else [])
        if where:
            self.close()
            raise ClusterError(
                f"the Dask cluster at {address} cannot run trials: {' and '.join(where)} cannot import this project "
                f"({on_scheduler or failing[0]}); install it where they run (make venv, or pip install -e . in a "
                "checkout of the same commit) or start them with the repository root on PYTHONPATH"
            )

    def submit(self, spec: TrialSpec) -> None:
        # pure=False: a resubmitted trial (after a resume) runs again rather than
        # returning a cached result of a cancelled run
        future = self.client.submit(execute, self.plain, spec, self.device, pure=False,
                                    key=f"trial-{spec['id']}-{time.monotonic_ns()}")
        self.futures[future] = spec

    def _wait(self, futures: list) -> set:
        from distributed import wait

        done, _ = wait(futures, return_when="FIRST_COMPLETED")
        return done

    def close(self) -> None:
        # may be called twice (the experiment's finally, then Ctrl-C's handler): the second
        # call would reach a client whose event loop is gone
        if self.client.status in ("closing", "closed"):
            return
        for future in self.futures:
            future.cancel()
        self.futures.clear()
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()
        self._quiet.close()


def make_executor(plain: dict, workers: Optional[int] = None, dask: Optional[str] = None,
                  device: Optional[str] = None, progress: bool = True) -> Executor:
    if dask:
        return DaskExecutor(plain, dask, workers=workers, device=device)
    if workers and workers > 1:
        return Processes(plain, workers, device=device)
    return Sequential(plain, device=device, progress=progress)
