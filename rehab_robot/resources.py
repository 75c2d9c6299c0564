"""Locate the files shipped with rehab_robot: URDF, example configuration, launch files.

They live at the top of the source tree (``urdf/``, ``config/``, ``launch/``) and are
installed to ``<prefix>/share/rehab_robot/`` by colcon or pip.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

PACKAGE = "rehab_robot"


def share_dir() -> Path:
    """Return the directory holding ``urdf/``, ``config/`` and ``launch/``.

    Looked up in order: ``$REHAB_ROBOT_SHARE``, the source tree this module is
    imported from, ``<sys.prefix>/share/rehab_robot``, then the ament index.
    """
    candidates = []
    if os.environ.get("REHAB_ROBOT_SHARE"):
        candidates.append(Path(os.environ["REHAB_ROBOT_SHARE"]))
    candidates.append(Path(__file__).resolve().parent.parent)
    candidates.append(Path(sys.prefix) / "share" / PACKAGE)
    for candidate in candidates:
        if (candidate / "urdf").is_dir():
            return candidate
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(PACKAGE))
    except Exception:  # noqa: BLE001 - any failure means "not installed through ament"
        pass
    raise FileNotFoundError(
        "rehab_robot data files not found; looked in: " + ", ".join(str(c) for c in candidates)
    )


def default_urdf() -> Path:
    """Return the path of the shipped rehabilitation arm URDF."""
    return share_dir() / "urdf" / "rehab_arm.urdf"


def example_patient() -> Path:
    """Return the path of the shipped example patient profile."""
    return share_dir() / "config" / "patients" / "example_patient.yaml"


def example_protocol() -> Path:
    """Return the path of the shipped example passive range-of-motion protocol."""
    return share_dir() / "config" / "protocols" / "passive_elbow_rom.yaml"
