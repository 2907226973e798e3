"""Elementwise passes split over a few threads, bit for bit the serial result.

NumPy releases the GIL inside its ufuncs, so two threads each running a ufunc over half the rows
of a (1024, 256) activation use two cores. Between the matrix products BLAS's own threads are
idle, so the passes around them can have the cores; a product itself is never split here (BLAS
does that).

Only splits that keep every bit are made: an elementwise pass split by rows (or by slices of a
flat buffer) computes each element with the same operations, and a sum along a row (softmax's)
stays within one part. Sums over many rows (a loss, a norm, a bias gradient) are not split: split
by rows they would add in another order. (A bias gradient split by columns keeps its bits, but
NumPy sums half the columns of a (1024, 256) array, strided, in about the time of all of them.)

:class:`Split` decides when splitting pays (``min_rows``: below it a pass runs on the calling
thread, with no hand-off) and runs the parts; :data:`SERIAL` never splits and has no threads.
"""

import queue
import threading
from collections.abc import Callable, Sequence

# One until two measure faster: on the saturated machine of issue 29 (load 16 to 39 on 2 cores)
# two threads measured 0.97x to 1.21x one in paired runs, 0.51x to 2.31x in bench.engine's:
# noise (docs/benchmarks.md); the idle figure is owed (`python -m bench.engine --workloads bc
# --threads 2 --compare-threads`). model_core asks nothing of the machine (no os): the service
# passes TRAIN_THREADS.
DEFAULT_THREADS = 1
# Batches of fewer rows run every pass on the calling thread: below this the hand-off to another
# thread (tens of microseconds) costs more than half a pass saves.
MIN_ROWS = 256
# Slices of flat buffers start on 64-byte boundaries (16 float32s), so that two threads never
# write one cache line.
ALIGN_ITEMS = 16
# For the threshold, a flat buffer (the optimizer's) counts as rows of this many items, about
# the work of one row of a hidden layer.
ITEMS_PER_ROW = 256


class Task:
    """One part of a pass, run by whichever thread claims it first: its helper, or the caller
    once the caller's own part is done. So a helper that the machine's load keeps off the CPU
    costs a pass nothing but the hand-off: the caller does that part too."""

    def __init__(self, function: Callable[[slice], object], part: slice):
        self.function = function
        self.part = part
        self.error: BaseException | None = None
        self._claim = threading.Lock()
        self._done = threading.Lock()
        self._done.acquire()

    def claim(self) -> bool:
        return self._claim.acquire(blocking=False)

    def run(self) -> None:
        """Run by the thread that claimed it; :meth:`wait` returns once it has ended."""
        try:
            self.function(self.part)
        except BaseException as error:  # handed to the caller, which raises it
            self.error = error
        finally:
            self._done.release()

    def wait(self) -> None:
        self._done.acquire()


class Workers:
    """``threads - 1`` persistent helper threads; the calling thread always takes the first part.

    Each helper waits on its own queue; :meth:`run` hands one part to each, runs its own, then
    runs any handed part that no helper has started yet, and waits for the others. An exception
    in any part is raised in the caller once every part has ended.
    """

    def __init__(self, threads: int):
        self._tasks = [queue.SimpleQueue() for _ in range(threads - 1)]
        self._threads = [
            threading.Thread(target=self._serve, args=(tasks,), name=f"model_core-{i}", daemon=True)
            for i, tasks in enumerate(self._tasks, 1)
        ]
        for thread in self._threads:
            thread.start()

    @staticmethod
    def _serve(tasks: queue.SimpleQueue) -> None:
        while (task := tasks.get()) is not None:
            if task.claim():
                task.run()

    def run(self, function: Callable[[slice], object], parts: Sequence[slice]) -> None:
        handed = [Task(function, part) for part in parts[1:]]
        for tasks, task in zip(self._tasks, handed, strict=False):
            tasks.put(task)
        try:
            function(parts[0])
        finally:
            for task in handed:
                if task.claim():
                    task.run()
                task.wait()
        for task in handed:
            if task.error is not None:
                raise task.error

    def close(self) -> None:
        for tasks in self._tasks:
            tasks.put(None)
        for thread in self._threads:
            thread.join()


class Split:
    """Runs a pass in ``threads`` parts when it is big enough, else whole on the calling thread.

    Use it as a context manager (or call :meth:`close`): the helper threads start on the first
    split and end at :meth:`close`. ``threads=1`` never starts a thread.
    """

    def __init__(self, threads: int = DEFAULT_THREADS, min_rows: int = MIN_ROWS):
        if threads < 1:
            raise ValueError("threads must be at least 1")
        self.threads = threads
        self.min_rows = min_rows
        self._workers: Workers | None = None

    def __enter__(self) -> "Split":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        if self._workers is not None:
            self._workers.close()
            self._workers = None

    def splits(self, rows: int) -> bool:
        """Whether a pass over ``rows`` rows is split."""
        return self.threads > 1 and rows >= self.min_rows

    def splits_items(self, items: int) -> bool:
        """Whether a pass over a flat buffer of ``items`` is split: it counts as rows of
        ITEMS_PER_ROW items."""
        return self.threads > 1 and items >= self.min_rows * ITEMS_PER_ROW

    def by_rows(self, function: Callable[[slice], object], rows: int) -> None:
        """``function(part)`` for parts of ``range(rows)`` (one part, ``slice(None)``, when the
        pass is too small to split)."""
        self.by_slices(function, rows, rows, 1)

    def by_items(self, function: Callable[[slice], object], items: int) -> None:
        """``function(part)`` for 64-byte-aligned parts of a flat buffer of ``items`` float32s or
        float64s (see :meth:`splits_items`)."""
        self.by_slices(function, items, items // ITEMS_PER_ROW, ALIGN_ITEMS)

    def by_slices(self, function: Callable[[slice], object], length: int, rows: int, align: int):
        if not self.splits(rows) or length < 2 * align:
            function(slice(None))
            return
        if self._workers is None:
            self._workers = Workers(self.threads)
        self._workers.run(function, parts(length, self.threads, align))


def parts(length: int, count: int, align: int = 1) -> list[slice]:
    """``range(length)`` cut into ``count`` slices of nearly equal size, every boundary a
    multiple of ``align``; fewer slices when there is not enough to cut."""
    step = -(-length // count // align) * align or align
    return [slice(start, min(start + step, length)) for start in range(0, length, step)]


SERIAL = Split(threads=1)
