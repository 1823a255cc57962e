"""The one ``main`` every pref-rl node uses: init, spin, clean shutdown on SIGINT/SIGTERM."""

from __future__ import annotations

import signal
from collections.abc import Callable, Sequence

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from pref_rl_learner.errors import PrefRLError


class NodeExit(Exception):  # noqa: N818 (a control-flow signal, like SystemExit)
    """Raised inside a node callback to end the node with an exit status (0: finished)."""

    def __init__(self, status: int = 0, reason: str = '') -> None:
        super().__init__(reason)
        self.status = status


_SIGNAL_POLL_S = 0.1


class _StopRequest:
    """Set by SIGINT/SIGTERM; the spin loop checks it between callbacks. Raising from the
    handler instead can land inside rclpy's C++ message take, where pybind11 turns the
    exception into a RuntimeError ("Unable to convert call argument") and the node dies
    with status 1 instead of stopping cleanly."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, frame: object) -> None:
        self.requested = True


def run_node(factory: Callable[[], Node], args: Sequence[str] | None = None) -> int:
    """Create the node from ``factory`` and spin it until shutdown; return an exit status.

    SIGINT/SIGTERM (what the launcher sends) end it cleanly with status 0, with the ROS
    context still valid while the node is destroyed (so it can log and publish a last
    message); a callback that raises :class:`NodeExit` ends it with that status; a
    :class:`PrefRLError` (bad parameters, say) is logged as one line and gives status 2.
    """
    # rclpy's own handlers would shut the context down before our cleanup runs.
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    # A process started in the background by a non-interactive shell inherits SIGINT as
    # ignored (and Python then keeps it ignored); a node must still stop on SIGINT.
    stop = _StopRequest()
    previous_int = signal.signal(signal.SIGINT, stop)
    previous = signal.signal(signal.SIGTERM, stop)
    node = None
    status = 0
    try:
        node = factory()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while rclpy.ok() and not stop.requested:
            # A bounded wait, so a stop request is seen within _SIGNAL_POLL_S.
            executor.spin_once(timeout_sec=_SIGNAL_POLL_S)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except PrefRLError as err:  # e.g. invalid parameters: a clear message, not a traceback
        rclpy.logging.get_logger('pref_rl').error(f'{type(err).__name__}: {err}')
        status = 2
    except NodeExit as done:
        status = done.status
        if node is not None and str(done):
            node.get_logger().info(str(done))
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second signal must not cut cleanup
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
    return status
