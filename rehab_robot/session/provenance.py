"""What a session ran with: copies and hashes of its input files, the software, the hardware.

A report names a patient profile and a protocol by path, but a file edited after the
session would no longer say what was run. The session folder therefore keeps a copy
of each input, and the report its SHA-256, with the software version (package, git
commit, ROS distro) and the hardware backend and its options.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Mapping, Optional

#: Folder, inside the session folder, that keeps the input files as used.
INPUTS_DIR = "inputs"


def sha256_of(path: Path) -> str:
    """Return the SHA-256 of the file at ``path`` as 64 hex digits."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def keep_input(session_dir: Path, role: str, source: Path) -> dict[str, str]:
    """Copy input ``source`` into ``session_dir/inputs/<role><suffix>``; return its record.

    The record holds the original path, the copy (relative to the session folder) and
    the SHA-256 of the bytes that were read, which the copy has too.
    """
    source = Path(source)
    target = Path(session_dir) / INPUTS_DIR / f"{role}{source.suffix or '.yaml'}"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return {"source": str(source.resolve()), "copy": str(target.relative_to(session_dir)),
            "sha256": sha256_of(target)}


def software_record() -> dict[str, Optional[str]]:
    """Return the package version, the git commit of the source tree (None outside a
    git checkout) and the ROS distro in use."""
    try:
        version = importlib.metadata.version("rehab_robot")
    except importlib.metadata.PackageNotFoundError:
        version = None
    return {"package": "rehab_robot", "version": version, "git_commit": _git_commit(),
            "ros_distro": ros_distro()}


def ros_distro() -> Optional[str]:
    """Return the ROS distro: ``ROS_DISTRO`` if set, else the one whose rclpy wheel is installed."""
    if os.environ.get("ROS_DISTRO"):
        return os.environ["ROS_DISTRO"]
    for dist in importlib.metadata.distributions():
        parts = (dist.metadata["Name"] or "").lower().split("-")
        if len(parts) == 3 and parts[0] == "ros" and parts[2] == "rclpy":  # ros-jazzy-rclpy
            return parts[1]
    return None


def hardware_record(backend: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """Return the hardware backend's name and the options it was given."""
    return {"backend": backend, "options": dict(options)}


def _git_commit() -> Optional[str]:
    source = Path(__file__).resolve().parent
    try:
        done = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    commit = done.stdout.strip()
    if done.returncode != 0 or len(commit) != 40:
        return None
    dirty = subprocess.run(["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, timeout=5, check=False)
    return commit + ("-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")
