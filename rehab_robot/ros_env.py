"""Environment for ROS 2 processes that keeps DDS discovery on this machine."""

from __future__ import annotations

import os
import random
from typing import Mapping, Optional

#: Distros whose rmw ignores ROS_AUTOMATIC_DISCOVERY_RANGE and need ROS_LOCALHOST_ONLY.
OLDER_DISTROS = ("foxy", "galactic", "humble", "iron")

#: Domain ids the tests and demos draw from (valid for any port layout, away from 0).
FREE_DOMAIN_RANGE = range(11, 101)


def localhost_env(
    domain_id: Optional[int] = None, base: Optional[Mapping[str, str]] = None
) -> dict[str, str]:
    """Return a copy of ``base`` (default: ``os.environ``) with DDS kept on localhost.

    Args:
        domain_id: ROS_DOMAIN_ID to set. ``None`` keeps the one in ``base`` if any,
            else draws a free-range id so parallel runs do not cross.
        base: Environment to start from.
    """
    env = dict(os.environ if base is None else base)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    if env.get("ROS_DISTRO", "").lower() in OLDER_DISTROS:
        env["ROS_LOCALHOST_ONLY"] = "1"
    if domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(domain_id)
    elif not env.get("ROS_DOMAIN_ID"):
        env["ROS_DOMAIN_ID"] = str(random.choice(FREE_DOMAIN_RANGE))
    env.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env
