"""Environment for ROS 2 processes that keeps DDS discovery on this machine."""

from __future__ import annotations

import os
import random
from typing import Mapping, Optional

from rehab_robot.errors import ConfigError

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


#: Largest ROS_DOMAIN_ID whose DDS ports fit in 16 bits (Fast DDS, Cyclone: 7400 + 250·id + …).
MAX_DOMAIN_ID = 232
#: Distance between a graph's public domain and its private control domain (``control_domain:=auto``).
CONTROL_DOMAIN_OFFSET = 100


def control_domain_id(setting: str, public_domain: int) -> Optional[int]:
    """Return the DDS domain of the control chain for ``control_domain:=setting``, or None for off.

    The control chain (driver, F/T driver, supervisor, controller) talks on a private domain
    of its own, so that a tool joining the public domain can never delay it (see
    docs/architecture.md, "The control domain").

    Args:
        setting: ``auto`` (the public domain + 100, or − 100 above 132), ``public`` (everything
            on the public domain), or a domain id 0..232 other than the public one.
        public_domain: The graph's ROS_DOMAIN_ID.

    Raises:
        ConfigError: naming the setting and what is allowed.
    """
    text = str(setting).strip().lower()
    if text == "public":
        return None
    if text == "auto":
        up = public_domain + CONTROL_DOMAIN_OFFSET
        return up if up <= MAX_DOMAIN_ID else public_domain - CONTROL_DOMAIN_OFFSET
    allowed = f"allowed: auto, public, or a domain id 0..{MAX_DOMAIN_ID} other than ROS_DOMAIN_ID ({public_domain})"
    try:
        domain = int(text)
    except ValueError:
        raise ConfigError(f"control_domain {setting!r} is not allowed; {allowed}") from None
    if not 0 <= domain <= MAX_DOMAIN_ID or domain == public_domain:
        raise ConfigError(f"control_domain {setting!r} is not allowed; {allowed}")
    return domain


def public_domain_id(env: Optional[Mapping[str, str]] = None) -> int:
    """Return the ROS_DOMAIN_ID of ``env`` (default: this process's environment); 0 when unset.

    Raises:
        ConfigError: if it is set but not a domain id 0..232.
    """
    text = (os.environ if env is None else env).get("ROS_DOMAIN_ID", "").strip()
    if not text:
        return 0
    try:
        domain = int(text)
    except ValueError:
        domain = -1
    if not 0 <= domain <= MAX_DOMAIN_ID:
        raise ConfigError(f"ROS_DOMAIN_ID={text!r} is not allowed; allowed: 0..{MAX_DOMAIN_ID}")
    return domain
