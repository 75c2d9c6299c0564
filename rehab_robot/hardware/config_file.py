"""Reading a backend's YAML configuration file: the parts every backend shares."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import yaml

from rehab_robot.errors import ConfigError

__all__ = ["is_number", "read_config_mapping"]


def is_number(value) -> bool:
    """True for a finite int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_config_mapping(path: Path, kind: str, fields: Sequence[str]) -> dict[str, Any]:
    """Return the YAML mapping in ``path``, whose top-level keys must be among ``fields``.

    Args:
        path: The configuration file.
        kind: What it configures, for the message of an unreadable file (e.g. "canopen").
        fields: The top-level fields allowed.

    Raises:
        ConfigError: naming the file and what is wrong: unreadable, not YAML, not a
            mapping, or the first unknown field with the allowed ones.
    """
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{kind} configuration {path}: cannot be read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a YAML mapping with fields {', '.join(fields)}")
    unknown = sorted(set(data) - set(fields), key=str)
    if unknown:
        raise ConfigError(f"{path}: unknown field {unknown[0]!r}; allowed: {', '.join(fields)}")
    return data
