"""A top-down drawing of a Panda scene, for backends without a camera.

Looking down on the table with the robot at the bottom edge: image up is +x (away from the
robot), image left is +y. The workspace box is a lighter rectangle, the goal a green disc, the
block a blue square, the end effector a red disc; a strip on the right shows heights (end
effector red, a 3-D goal green) from the box's floor (bottom) to its ceiling (top).
"""

from __future__ import annotations

import numpy as np

_BACKGROUND = (35, 35, 35)
_WORKSPACE = (90, 90, 90)
_GOAL = (60, 200, 60)
_BLOCK = (60, 90, 230)
_EE = (230, 60, 50)


def draw_scene(size: int, low: tuple[float, ...], high: tuple[float, ...],
               ee: np.ndarray, goal: np.ndarray | None,
               block: np.ndarray | None, block_half_size: float = 0.025) -> np.ndarray:
    """``uint8 [size, size, 3]`` top-down view of the box ``[low, high]`` (padded by 10 %)."""
    image = np.empty((size, size, 3), np.uint8)
    image[:] = _BACKGROUND
    strip = max(2, size // 8)
    width = size - strip
    pad_x = 0.1 * (high[0] - low[0])
    pad_y = 0.1 * (high[1] - low[1])
    x_range = (low[0] - pad_x, high[0] + pad_x)
    y_range = (low[1] - pad_y, high[1] + pad_y)
    # Pixel centres in metres: rows run from +x (top) down, columns from +y (left) right.
    rows = x_range[1] - (np.arange(size) + 0.5) / size * (x_range[1] - x_range[0])
    cols = y_range[1] - (np.arange(width) + 0.5) / width * (y_range[1] - y_range[0])
    px, py = rows[:, None], cols[None, :]
    view = image[:, :width]
    view[(px >= low[0]) & (px <= high[0]) & (py >= low[1]) & (py <= high[1])] = _WORKSPACE
    metre = min(size / (x_range[1] - x_range[0]), width / (y_range[1] - y_range[0]))
    min_radius = 1.5 / metre  # at least 1.5 pixels, whatever the size
    if goal is not None:
        radius = max(0.03, min_radius)
        view[(px - goal[0]) ** 2 + (py - goal[1]) ** 2 <= radius ** 2] = _GOAL
    if block is not None:
        half = max(block_half_size, min_radius)
        view[(abs(px - block[0]) <= half) & (abs(py - block[1]) <= half)] = _BLOCK
    radius = max(0.02, min_radius)
    view[(px - ee[0]) ** 2 + (py - ee[1]) ** 2 <= radius ** 2] = _EE
    # Height strip.
    image[:, width:] = _WORKSPACE
    for value, colour in ((goal[2] if goal is not None and len(goal) == 3 else None, _GOAL),
                          (ee[2], _EE)):
        if value is None:
            continue
        fraction = (value - low[2]) / (high[2] - low[2])
        row = int(round((1 - min(max(fraction, 0.0), 1.0)) * (size - 1)))
        image[max(row - 1, 0):row + 2, width:] = colour
    return image


def fit_frame(frame: np.ndarray, size: int) -> np.ndarray:
    """A camera frame (``[H, W, 3]`` or ``[H, W, 4]``, uint8 or float in [0, 1]) centre-cropped
    to a square and resized to ``uint8 [size, size, 3]`` (nearest neighbour)."""
    array = np.asarray(frame)
    if array.ndim != 3 or array.shape[2] not in (3, 4) or min(array.shape[:2]) < 1:
        raise ValueError(f'camera frame must be [H, W, 3|4], got shape {array.shape}')
    if array.dtype != np.uint8:
        array = (np.clip(array.astype(np.float64), 0.0, 1.0) * 255).round().astype(np.uint8)
    height, width = array.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    index = (np.arange(size) * side // size)
    return array[top + index][:, left + index, :3].copy()
