"""The frames of queried segments, fetched from the robot at a rate its service answers.

Segments reach the learner without their camera frames; before a query is published the
``learner`` node asks the robot's ``GetSegmentFrames`` service for the frames of both of its
segments. A feedback session selects all its queries at once (40 queries: 80 segments), and
requests sent all at once overflow a service's request queue: ROS's default service profile
keeps the last 10, the others are never answered, and nothing says so. :class:`FramesFetcher`

- keeps at most ``max_in_flight`` requests in flight (default 8: below even the default
  queue depth), and sends the next one as soon as one is answered;
- asks once per segment id, however many waiting queries show that segment;
- gives each request ``timeout_s`` for its answer, then abandons it and asks again, at most
  ``retries`` times;
- resolves each side of each query to its frames, or to the reason it has none (the robot
  refused, e.g. an evicted segment; an unusable answer; no answer after every retry; no
  service), each reason logged and counted;
- releases queries in the order they came, each once both its sides are resolved;
- counts the queries released with frames on both sides, for the run's summary
  (:meth:`FramesFetcher.figures`).

It never blocks: :meth:`FramesFetcher.poll` is called from the node's timer, and answers
arrive through the client's futures in the same executor.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from pref_rl_learner.config import ConfigError
from pref_rl_learner.errors import PrefRLError
from pref_rl_learner.ros.qos import SERVICE
from pref_rl_learner.types import PreferenceQuery, Segment
from pref_rl_msgs.srv import GetSegmentFrames

SIDES = ('left', 'right')


def check_frames_config(timeout_s: float, max_in_flight: int, retries: int) -> None:
    """Check the fetcher's settings (the node's ``frames_*`` parameters).

    Raises:
        ConfigError: ``timeout_s`` not > 0, ``max_in_flight`` not in 1..``SERVICE.depth``,
            or ``retries`` < 0.
    """
    if not timeout_s > 0:
        raise ConfigError(f'frames_timeout_s must be > 0, got {timeout_s}')
    if not 1 <= max_in_flight <= SERVICE.depth:
        raise ConfigError(f'frames_max_in_flight must be in 1..{SERVICE.depth} (the '
                          f'service queue depth), got {max_in_flight}')
    if retries < 0:
        raise ConfigError(f'frames_retries must be >= 0, got {retries}')


class FramesClient(Protocol):
    """What :class:`FramesFetcher` needs of an rclpy ``GetSegmentFrames`` client."""

    def service_is_ready(self) -> bool: ...
    def call_async(self, request: GetSegmentFrames.Request) -> Any: ...
    def remove_pending_request(self, future: Any) -> None: ...


class Logger(Protocol):
    """An rclpy logger's ``warning``."""

    def warning(self, message: str) -> Any: ...


@dataclass
class FramesCounts:
    """What the fetcher did so far (this process)."""

    queries: int = 0
    """Queries handed in (:meth:`FramesFetcher.add`)."""
    released: int = 0
    """Queries handed back (:meth:`FramesFetcher.poll`)."""
    with_frames: int = 0
    """Released queries with frames on both sides."""
    requests: int = 0
    """Requests sent, retries included."""
    retries: int = 0
    """Requests sent again after no answer within the timeout."""
    refused: int = 0
    """Segments the robot had no frames for (its answer's ``success`` was false)."""
    unusable: int = 0
    """Segments whose answer did not make frames of the segment."""
    timed_out: int = 0
    """Segments with no answer after every retry."""
    no_service: int = 0
    """Segments not asked for because the service was not available."""


@dataclass
class _Request:
    """Frames wanted for one segment id."""

    segment: Segment
    attempts: int = 0
    future: Any = None
    sent_at: float = 0.0


@dataclass
class _Waiting:
    """A query whose sides are not all resolved yet."""

    query: PreferenceQuery
    sides: dict[str, str] = field(default_factory=dict)
    """Side -> segment id still wanted."""


class FramesFetcher:
    """Attaches the robot's frames to queries before they are published.

    Args:
        client: the ``GetSegmentFrames`` client (create it with the ``SERVICE`` QoS).
        timeout_s: seconds a request may wait for its answer before it is asked again.
        max_in_flight: requests in flight at most.
        retries: how often a request without an answer is sent again.
        logger: where each segment without frames is reported.
        clock: monotonic seconds (tests pass their own).

    Raises:
        ConfigError: see :func:`check_frames_config` (only with a client).
    """

    def __init__(self, client: FramesClient | None, timeout_s: float, max_in_flight: int,
                 retries: int, logger: Logger,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if client is not None:
            check_frames_config(timeout_s, max_in_flight, retries)
        self.client, self.timeout_s = client, timeout_s
        self.max_in_flight, self.retries = max_in_flight, retries
        self.logger, self.clock = logger, clock
        self.counts = FramesCounts()
        self._waiting: collections.deque[_Waiting] = collections.deque()
        self._wanted: dict[str, _Request] = {}  # segment id -> request, in the order asked
        self._resolved: dict[str, Segment | str] = {}  # segment id -> framed segment or reason

    # ---------------------------------------------------------------------------- queries

    def add(self, query: PreferenceQuery) -> None:
        """Fetch the frames ``query``'s segments lack; :meth:`poll` releases it."""
        self.counts.queries += 1
        waiting = _Waiting(query)
        for side in SIDES:
            segment: Segment = getattr(query, side)
            if segment.frames is not None:
                continue
            sid = segment.segment_id
            waiting.sides[side] = sid
            if sid not in self._wanted and sid not in self._resolved:
                self._wanted[sid] = _Request(segment)
        self._waiting.append(waiting)
        self._send()

    def poll(self) -> list[PreferenceQuery]:
        """Abandon late requests, send more, and return the queries now complete (in order)."""
        now = self.clock()
        for sid, request in list(self._wanted.items()):
            if request.future is None or now - request.sent_at < self.timeout_s:
                continue
            if self.client is not None:
                self.client.remove_pending_request(request.future)
            request.future.cancel()
            request.future = None
            if request.attempts > self.retries:
                self.counts.timed_out += 1
                self._resolve(sid, f'no answer within {self.timeout_s:g} s, '
                                   f'{request.attempts} requests')
            else:
                self.counts.retries += 1
        self._send()
        return self._release()

    def waiting_ids(self) -> set[str]:
        """Ids of the queries not released yet."""
        return {w.query.query_id for w in self._waiting}

    def figures(self) -> dict[str, Any]:
        """The summary's frames figures: queries released with frames on both sides, of the
        queries asked (handed in) in this process, and their fraction (None: none asked)."""
        c = self.counts
        return {'frames_queries_asked': c.queries, 'frames_queries_with_both': c.with_frames,
                'frames_fraction': c.with_frames / c.queries if c.queries else None,
                'frames_segments_failed': c.refused + c.unusable + c.timed_out + c.no_service}

    # ---------------------------------------------------------------------------- requests

    def _in_flight(self) -> int:
        return sum(1 for r in self._wanted.values() if r.future is not None)

    def _send(self) -> None:
        """Send waiting requests while fewer than ``max_in_flight`` are in flight."""
        idle = [sid for sid, r in self._wanted.items() if r.future is None]
        if not idle:
            return
        client = self.client
        if client is None or not client.service_is_ready():
            self.counts.no_service += len(idle)
            for sid in idle:
                self._resolve(sid, 'the frames service is not available', log=False)
            self.logger.warning(f'no frames for {len(idle)} segments: the frames service is '
                                f'not available; their queries go out without them')
            return
        free = self.max_in_flight - self._in_flight()
        for sid in idle[:max(0, free)]:
            request = self._wanted[sid]
            request.attempts += 1
            request.sent_at = self.clock()
            request.future = client.call_async(GetSegmentFrames.Request(segment_id=sid))
            self.counts.requests += 1
            request.future.add_done_callback(
                lambda future, sid=sid: self._on_answer(sid, future))

    def _on_answer(self, sid: str, future: Any) -> None:
        request = self._wanted.get(sid)
        if request is None or request.future is not future or future.cancelled():
            return  # abandoned after a timeout
        try:
            response = future.result()
        except Exception as err:  # a failed call must not stop the node: count, report
            self.counts.unusable += 1
            self._resolve(sid, f'the call failed: {type(err).__name__}: {err}')
        else:
            self._resolve(sid, self._framed(request.segment, response))
        self._send()

    def _framed(self, segment: Segment, response: Any) -> Segment | str:
        """``segment`` with the response's frames, or the reason it has none (counted)."""
        if response is None or not response.success:
            self.counts.refused += 1
            return f'the robot has none: {response.message if response else "no response"}'
        shape = tuple(int(d) for d in response.frame_shape)
        flat = np.frombuffer(response.frames, dtype=np.uint8)
        size = int(np.prod(shape)) if len(shape) == 3 else 0
        try:
            if not size or flat.size % size or response.frame_stride < 1:
                raise ValueError(f'{flat.size} pixels do not make frames of shape '
                                 f'{list(shape)} (frame_stride {response.frame_stride})')
            return dataclasses.replace(segment, frames=flat.reshape(-1, *shape),
                                       frame_stride=int(response.frame_stride))
        except (ValueError, PrefRLError) as err:
            self.counts.unusable += 1
            return f'unusable frames: {err}'

    def _resolve(self, sid: str, outcome: Segment | str, log: bool = True) -> None:
        self._wanted.pop(sid, None)
        self._resolved[sid] = outcome
        if log and isinstance(outcome, str):
            self.logger.warning(f'no frames for segment {sid!r}: {outcome}; its queries go '
                                'out without them')

    # ---------------------------------------------------------------------------- release

    def _release(self) -> list[PreferenceQuery]:
        out = []
        while self._waiting and all(sid in self._resolved
                                    for sid in self._waiting[0].sides.values()):
            waiting = self._waiting.popleft()
            framed = {side: self._resolved[sid] for side, sid in waiting.sides.items()}
            query = dataclasses.replace(waiting.query, **{
                side: got for side, got in framed.items() if isinstance(got, Segment)})
            self.counts.released += 1
            if all(getattr(query, side).frames is not None for side in SIDES):
                self.counts.with_frames += 1
            out.append(query)
        self._forget()
        return out

    def _forget(self) -> None:
        """Drop outcomes no waiting query needs."""
        needed = {sid for w in self._waiting for sid in w.sides.values()}
        for sid in [sid for sid in self._resolved if sid not in needed]:
            del self._resolved[sid]
