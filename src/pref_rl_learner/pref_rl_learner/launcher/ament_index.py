"""Package lookups in the ament resource index along ``AMENT_PREFIX_PATH`` (no ROS import)."""

from __future__ import annotations

import os
from pathlib import Path


class PackageNotFoundError(LookupError):
    """A package or one of its executables is not in any prefix of ``AMENT_PREFIX_PATH``."""


def _prefixes() -> list[Path]:
    return [Path(p) for p in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if p]


def find_package_prefix(package: str) -> Path:
    """The install prefix that registers ``package`` in the ament index."""
    for prefix in _prefixes():
        if (prefix / 'share' / 'ament_index' / 'resource_index' / 'packages' / package).is_file():
            return prefix
    raise PackageNotFoundError(
        f"package '{package}' not found in AMENT_PREFIX_PATH "
        f"({os.environ.get('AMENT_PREFIX_PATH') or 'unset'}); is install/setup.bash sourced?")


def find_package_share(package: str) -> Path:
    """``<prefix>/share/<package>``, what ``$(find-pkg-share package)`` expands to."""
    return find_package_prefix(package) / 'share' / package


def find_executable(package: str, executable: str) -> Path:
    """``<prefix>/lib/<package>/<executable>``, what ``ros2 run package executable`` starts."""
    lib = find_package_prefix(package) / 'lib' / package
    path = lib / executable
    if not (path.is_file() and os.access(path, os.X_OK)):
        have = sorted(p.name for p in lib.iterdir()) if lib.is_dir() else []
        raise PackageNotFoundError(
            f"package '{package}' has no executable '{executable}' in {lib} "
            f"(it has: {', '.join(have) or 'none'})")
    return path
