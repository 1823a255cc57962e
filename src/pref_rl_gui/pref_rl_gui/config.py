"""Settings of the labelling app: one frozen dataclass, one ROS parameter per field."""

from __future__ import annotations

import getpass
import math
import os
from dataclasses import dataclass
from pathlib import Path

from pref_rl_learner.config import ConfigError


@dataclass(frozen=True)
class LabelerConfig:
    """Parameters of the ``labeler`` node and of ``pref-rl label`` (the standalone app)."""

    labeler_id: str = ''
    """Who answers, written into every label ('' : the login name, else ``person``)."""
    target: str = ''
    """What the clips are judged against, as the session's ``goal:=`` names it: a simulated
    target (``eval:3``; the frames draw it) or ``person`` / '' (a real arm: the target is the
    labeller's own, asked of nobody)."""
    outbox_dir: str = ''
    """Directory of the durable outbox of unacknowledged labels ('' : ``$XDG_STATE_HOME``, or
    ``~/.local/state``, ``/pref_rl/labeler-<labeler_id>``). Keep it across restarts: labels
    written there before a crash are sent when the app starts again."""
    submit_service: str = 'submit_label'
    """SubmitLabel service of the learner."""
    frames_service: str = 'robot/get_segment_frames'
    """GetSegmentFrames service asked for frames a query or episode lacks ('' : never)."""
    frames_timeout_s: float = 2.0
    """A frames request without an answer after this long is given up (the clip is drawn
    from its observations instead)."""
    undo_window_s: float = 2.0
    """A label waits this long in the outbox before it is sent, so it can still be undone
    (it can be undone for as long as it is unsent, e.g. while the learner is down)."""
    retry_initial_s: float = 0.5
    """First delay before resending a label the learner did not acknowledge."""
    retry_max_s: float = 10.0
    """Longest delay between resendings (the delay doubles up to this)."""
    call_timeout_s: float = 10.0
    """A SubmitLabel call without a response after this long is abandoned and retried."""
    playback_steps_per_s: float = 10.0
    """Clip playback speed in environment steps per second (10: real time at 0.1 s a step)."""
    loop_pause_s: float = 0.6
    """Pause on the last step of a clip before it loops."""
    episode_refresh_s: float = 5.0
    """The last-episode pane takes the newest finished episode at most this often."""
    history_points: int = 2000
    """Points of the accuracy / label-count history kept for the plot."""

    def __post_init__(self) -> None:
        name = type(self).__name__
        for field in ('frames_timeout_s', 'undo_window_s', 'loop_pause_s', 'episode_refresh_s'):
            value = getattr(self, field)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f'{name}.{field}: {value} must be finite and >= 0')
        if not 0 < self.retry_initial_s <= self.retry_max_s:
            raise ConfigError(f'{name}.retry_initial_s ({self.retry_initial_s}) must be > 0 '
                              f'and <= retry_max_s ({self.retry_max_s})')
        for field in ('call_timeout_s', 'playback_steps_per_s'):
            value = getattr(self, field)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f'{name}.{field}: {value} must be finite and > 0')
        if self.history_points < 2:
            raise ConfigError(f'{name}.history_points: {self.history_points} must be >= 2')
        if not self.submit_service:
            raise ConfigError(f'{name}.submit_service must not be empty')

    @property
    def resolved_labeler_id(self) -> str:
        """``labeler_id``, or the login name (``person`` when there is none)."""
        if self.labeler_id:
            return self.labeler_id
        try:
            return getpass.getuser() or 'person'
        except (KeyError, OSError):
            return 'person'

    @property
    def resolved_outbox_dir(self) -> Path:
        """``outbox_dir``, or the per-labeler default under the user's state directory."""
        if self.outbox_dir:
            return Path(self.outbox_dir).expanduser()
        state = os.environ.get('XDG_STATE_HOME') or str(Path.home() / '.local' / 'state')
        safe = ''.join(c if c.isalnum() or c in '-_.' else '_' for c in self.resolved_labeler_id)
        return Path(state) / 'pref_rl' / f'labeler-{safe}'
