"""Start the nodes of a :class:`LaunchPlan` as processes and supervise them.

Behaviour, like ``ros2 launch``: each node runs as its own process (in its own process group,
so signals reach its children too) with its output prefixed ``[name] ``; ``output="log"``
(the default) logs stdout and stderr and prints stderr too, ``screen``/``both`` print both
(launch ``logging/__init__.py``, the output configurations); SIGINT/SIGTERM to the runner
are forwarded to every node; when a node marked ``on_exit="shutdown"`` exits, all others are
stopped; a ``respawn`` node is started again after ``respawn_delay`` whenever it exits
while the session runs (launch ``actions/execute_local.py``); escalation is SIGINT ->
SIGTERM -> SIGKILL with timeouts. The exit status is 0 when every node exited cleanly and 1
when any node failed (a non-zero exit that the runner did not cause). Nodes also die with
the runner (``PR_SET_PDEATHSIG``) if it is killed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TextIO

from pref_rl_learner.launcher.plan import NodeSpec

# Exit statuses that mean "stopped on request" once the runner has asked a node to stop.
_STOPPED = {0, -signal.SIGINT, -signal.SIGTERM, -signal.SIGKILL, 128 + signal.SIGINT,
            128 + signal.SIGTERM}


try:
    _PRCTL = ctypes.CDLL('libc.so.6', use_errno=True).prctl
except (OSError, AttributeError):  # not glibc Linux: nodes just do not die with the runner
    _PRCTL = None
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: only a call through a preloaded pointer."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class _Process:
    spec: NodeSpec
    label: str
    popen: subprocess.Popen
    readers: list[threading.Thread]
    returncode: int | None = None
    stop_requested: bool = False
    respawns: int = 0
    respawn_at: float | None = None


class ProcessRunner:
    """Runs the nodes of a plan until they exit, a shutdown node exits, or a signal arrives."""

    def __init__(self, nodes: tuple[NodeSpec, ...] | list[NodeSpec], log_dir: Path,
                 stop_timeout_s: float = 5.0, stream: TextIO | None = None,
                 env: dict[str, str] | None = None) -> None:
        self._specs = list(nodes)
        self._log_dir = Path(log_dir)
        self._stop_timeout_s = stop_timeout_s
        self._stream = stream or sys.stdout
        self._env = dict(os.environ if env is None else env, PYTHONUNBUFFERED='1')
        self._lock = threading.Lock()
        self._procs: list[_Process] = []
        self._shutdown_reason: str | None = None

    def say(self, text: str) -> None:
        """Print a runner message (thread-safe, same stream as node output)."""
        with self._lock:
            self._stream.write(f'[launch] {text}\n')
            self._stream.flush()

    def run(self) -> int:
        """Start every node and supervise until all have exited. Returns the exit status."""
        self._log_dir.mkdir(parents=True, exist_ok=True)
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for sig in previous:
            signal.signal(sig, self._on_signal)
        try:
            self.say(f'logs in {self._log_dir}')
            for spec, label in zip(self._specs, _labels(self._specs), strict=True):
                self._start(spec, label)
            return self._supervise()
        finally:
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: object) -> None:
        self.request_shutdown(f'received {signal.Signals(signum).name}')

    def request_shutdown(self, reason: str) -> None:
        """Begin stopping every node (safe from signal handlers and other threads)."""
        if self._shutdown_reason is None:
            self._shutdown_reason = reason

    def _environment(self, spec: NodeSpec) -> dict[str, str]:
        env = dict(self._env)
        for key, value in spec.env.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    def _start(self, spec: NodeSpec, label: str, respawns: int = 0) -> None:
        mode = 'a' if respawns else 'w'
        log_file = open(self._log_dir / f'{label}.log', mode, encoding='utf-8')  # noqa: SIM115
        popen = subprocess.Popen(
            spec.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL, env=self._environment(spec), cwd=spec.cwd,
            start_new_session=True, preexec_fn=_die_with_parent)
        process = _Process(spec, label, popen, [], respawns=respawns)
        log_lock = threading.Lock()
        # stdout is printed unless output="log"; stderr always is (and both are logged).
        for stream, shown in ((popen.stdout, spec.output != 'log'), (popen.stderr, True)):
            reader = threading.Thread(
                target=self._pump, args=(stream, label, shown, log_file, log_lock),
                daemon=True, name=f'output-{label}')
            reader.start()
            process.readers.append(reader)
        threading.Thread(target=self._close_when_done, args=(process.readers, log_file),
                         daemon=True).start()
        self._procs.append(process)
        self.say(f'process started with pid [{popen.pid}]: {label} ({spec.source})')

    @staticmethod
    def _close_when_done(readers: list[threading.Thread], log_file: TextIO) -> None:
        for reader in readers:
            reader.join()
        log_file.close()

    def _pump(self, stream: IO[bytes], label: str, shown: bool, log_file: TextIO,
              log_lock: threading.Lock) -> None:
        for raw in iter(stream.readline, b''):
            line = raw.decode('utf-8', errors='replace').rstrip('\n')
            with log_lock:
                log_file.write(line + '\n')
                log_file.flush()
            if shown:
                with self._lock:
                    self._stream.write(f'[{label}] {line}\n')
                    self._stream.flush()
        stream.close()

    def _supervise(self) -> int:
        failed: list[str] = []
        stopping_since: float | None = None
        escalation = 0
        while any(p.returncode is None or p.respawn_at is not None for p in self._procs):
            for p in list(self._procs):
                if p.returncode is None and (code := p.popen.poll()) is not None:
                    p.returncode = code
                    for reader in p.readers:
                        reader.join(timeout=2.0)
                    self._report_exit(p, failed)
                if p.respawn_at is not None and self._shutdown_reason is None and \
                        time.monotonic() >= p.respawn_at:
                    p.respawn_at = None
                    self._start(p.spec, p.label, respawns=p.respawns + 1)
            if self._shutdown_reason is not None:
                for p in self._procs:
                    p.respawn_at = None
                now = time.monotonic()
                if stopping_since is None:
                    self.say(f'shutting down: {self._shutdown_reason}')
                    stopping_since = now
                    self._signal_all(signal.SIGINT)
                elif now - stopping_since > self._stop_timeout_s * (escalation + 1):
                    escalation += 1
                    sig = signal.SIGTERM if escalation == 1 else signal.SIGKILL
                    self._signal_all(sig)
            time.sleep(0.02)
        if failed:
            self.say(f"failed: {', '.join(failed)}")
            return 1
        return 0

    def _report_exit(self, p: _Process, failed: list[str]) -> None:
        code = p.returncode
        clean = code == 0 or (p.stop_requested and code in _STOPPED)
        spec = p.spec
        # on_exit="shutdown" ends the session at the first exit, respawn or not (launch's
        # OnProcessExit handler fires on every exit).
        respawn = (spec.respawn and not spec.shutdown_on_exit and self._shutdown_reason is None
                   and not p.stop_requested
                   and (spec.respawn_max_retries < 0 or p.respawns < spec.respawn_max_retries))
        if clean:
            self.say(f'process has finished cleanly [pid {p.popen.pid}]: {p.label}')
        else:
            self.say(f'process has died [pid {p.popen.pid}, exit code {code}]: {p.label}')
            self.say(f'its stderr is above, all its output in '
                     f'{self._log_dir / (p.label + ".log")}')
            if not respawn:
                failed.append(f'{p.label} (exit code {code})')
        if respawn:
            p.respawn_at = time.monotonic() + spec.respawn_delay_s
            self.say(f'respawning {p.label} in {spec.respawn_delay_s:g} s (respawn #'
                     f'{p.respawns + 1})')
        elif spec.shutdown_on_exit:
            self.request_shutdown(f'{p.label} exited and is marked on_exit="shutdown"')

    def _signal_all(self, sig: signal.Signals) -> None:
        for p in self._procs:
            if p.returncode is None:
                p.stop_requested = True
                if sig != signal.SIGINT:
                    self.say(f'sending {sig.name} to {p.label} [pid {p.popen.pid}]')
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.popen.pid, sig)

    def _stop_all(self) -> None:
        """Last resort on any exit path: nothing outlives the runner."""
        for p in self._procs:
            with contextlib.suppress(ProcessLookupError):  # the group: its children go too
                os.killpg(p.popen.pid, signal.SIGKILL)
            p.popen.wait()
            for reader in p.readers:
                reader.join(timeout=2.0)


def _labels(specs: list[NodeSpec]) -> list[str]:
    """Unique output prefixes: the node name, with ``-2``, ``-3`` ... on repeats."""
    seen: dict[str, int] = {}
    labels = []
    for spec in specs:
        base = spec.name.replace('/', '_')
        seen[base] = seen.get(base, 0) + 1
        labels.append(base if seen[base] == 1 else f'{base}-{seen[base]}')
    return labels
