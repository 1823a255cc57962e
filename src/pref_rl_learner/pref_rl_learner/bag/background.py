"""Runs a :class:`BagWriter` on its own thread behind a bounded queue.

A recorder's message callbacks only append the serialized bytes to a queue (constant time);
file I/O, splitting, fsync and the metadata rewrites happen on the writer thread, so a slow
disk never stalls the executor. The queue is bounded in bytes: when it is full a new message
is dropped and counted, never blocking the caller.
"""

from __future__ import annotations

import collections
import threading

from pref_rl_learner.bag.errors import BagError, BagWriteError
from pref_rl_learner.bag.metadata import BagMetadata
from pref_rl_learner.bag.writer import BagWriter


class BackgroundWriter:
    """Feeds ``writer`` from a thread. Call :meth:`close` to drain the queue and finish.

    Args:
        writer: the bag writer to run; only the writer thread touches it once started.
        max_queue_bytes: payload bytes that may wait for the thread before messages drop.
        poll_s: how often an idle thread checks whether the open file has reached its age.
    """

    def __init__(self, writer: BagWriter, max_queue_bytes: int = 256 * 2**20,
                 poll_s: float = 0.2) -> None:
        if max_queue_bytes < 1:
            raise BagWriteError(f'max_queue_bytes must be >= 1, got {max_queue_bytes}')
        self.writer = writer
        self.max_queue_bytes, self.poll_s = max_queue_bytes, poll_s
        self._queue: collections.deque[tuple[str, int, bytes]] = collections.deque()
        self._cond = threading.Condition()
        self._queued_bytes = 0
        self._closing = False
        self.received = 0
        """Messages handed to :meth:`put`."""
        self.dropped = 0
        """Messages dropped: the queue was full, or the writer had failed."""
        self.written = 0
        """Messages the writer accepted."""
        self.peak_queue_bytes = 0
        """Largest number of payload bytes that waited at once."""
        self.error: BagError | None = None
        """The error that stopped the writer thread, if one did."""
        self._thread = threading.Thread(target=self._run, name='bag-writer', daemon=True)
        self._thread.start()

    def put(self, topic: str, timestamp_ns: int, data: bytes) -> bool:
        """Queue one serialized message; False (and counted) when it had to be dropped."""
        size = len(data)
        with self._cond:
            self.received += 1
            if (self._closing or self.error is not None
                    or self._queued_bytes + size > self.max_queue_bytes):
                self.dropped += 1
                return False
            self._queue.append((topic, timestamp_ns, data))
            self._queued_bytes += size
            self.peak_queue_bytes = max(self.peak_queue_bytes, self._queued_bytes)
            self._cond.notify()
        return True

    @property
    def queued(self) -> int:
        """Messages waiting for the writer thread."""
        with self._cond:
            return len(self._queue)

    def _take(self) -> tuple[list[tuple[str, int, bytes]], bool]:
        with self._cond:
            if not self._queue and not self._closing:
                self._cond.wait(timeout=self.poll_s)
            batch = list(self._queue)
            self._queue.clear()
            self._queued_bytes = 0
            return batch, self._closing

    def _run(self) -> None:
        while True:
            batch, closing = self._take()
            done = 0
            if self.error is None:
                try:
                    for topic, stamp, data in batch:
                        self.writer.write(topic, stamp, data)
                        done += 1
                    self.writer.poll()
                except Exception as err:  # reported through .error, never lost
                    with self._cond:
                        self.error = err if isinstance(err, BagError) else BagWriteError(
                            f'{self.writer.path}: {type(err).__name__}: {err}')
            with self._cond:
                self.written += done
                self.dropped += len(batch) - done
            if closing:
                with self._cond:
                    if not self._queue:
                        return

    def close(self, timeout_s: float | None = None) -> BagMetadata:
        """Write what is queued, close the bag and return its metadata.

        Raises:
            BagWriteError: the writer failed (the bag keeps every file closed before that).
        """
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise BagWriteError(f'{self.writer.path}: the writer thread did not finish '
                                f'within {timeout_s} s')
        try:
            metadata = self.writer.close()
        except BagError as err:
            self.error = self.error or err
            raise
        if self.error is not None:
            raise BagWriteError(f'{self.writer.path}: writing stopped: {self.error}')
        return metadata
