"""The CiA 402 drive state machine as the host sees it: statusword decoding and the
controlword that moves a drive one step toward holding or following.

Plain module. The backend never climbs a drive out of Switch on disabled on its own
while running: only start-up and the operator's reset do (``climb=True``).
"""

from __future__ import annotations

NOT_READY = "not ready to switch on"
SWITCH_ON_DISABLED = "switch on disabled"
READY = "ready to switch on"
SWITCHED_ON = "switched on"
OPERATION_ENABLED = "operation enabled"
QUICK_STOP_ACTIVE = "quick stop active"
FAULT_REACTION_ACTIVE = "fault reaction active"
FAULT = "fault"

#: (mask, value) of statusword bits 0-3, 5, 6 for each state (CiA 402-2, table 30).
_STATES = (
    (0x4F, 0x00, NOT_READY),
    (0x4F, 0x40, SWITCH_ON_DISABLED),
    (0x6F, 0x21, READY),
    (0x6F, 0x23, SWITCHED_ON),
    (0x6F, 0x27, OPERATION_ENABLED),
    (0x6F, 0x07, QUICK_STOP_ACTIVE),
    (0x4F, 0x0F, FAULT_REACTION_ACTIVE),
    (0x4F, 0x08, FAULT),
)

# Controlword commands (bits 0-3 and 7).
SHUTDOWN = 0x06
SWITCH_ON = 0x07
ENABLE_OPERATION = 0x0F
QUICK_STOP = 0x02
DISABLE_VOLTAGE = 0x00
FAULT_RESET = 0x80

#: Statusword bit 12 in CSP: the drive follows the target position.
DRIVE_FOLLOWS_TARGET = 0x1000
VOLTAGE_ENABLED = 0x10
WARNING = 0x80

#: Low 16 bits of object 0x1000 (device type) of a CiA 402 drive.
DEVICE_PROFILE_402 = 0x0192
#: Mode of operation 0x6060: cyclic synchronous position.
MODE_CSP = 8


def state(statusword: int) -> str:
    """Return the CiA 402 state named by a statusword (bits 0-3, 5, 6)."""
    for mask, value, name in _STATES:
        if statusword & mask == value:
            return name
    return f"unknown (statusword 0x{statusword:04X})"


def controlword(current: str, follow: bool, climb: bool) -> int:
    """The controlword that moves a drive in ``current`` state one step toward its goal.

    The goal is Operation enabled when ``follow``, else holding in Quick stop active
    (quick stop option code 5-8: the drive stops, then holds position, energised).
    Holding is reached through Operation enabled, with the target at the actual position.

    Args:
        current: The drive's state (:func:`state`).
        follow: True to follow setpoints (Operation enabled).
        climb: True to leave Switch on disabled / Ready / Switched on (start-up and reset
            only); False keeps a drive that dropped out of operation where it is.
    """
    if current == OPERATION_ENABLED:
        return ENABLE_OPERATION if follow else QUICK_STOP
    if current == QUICK_STOP_ACTIVE:
        return ENABLE_OPERATION if follow else QUICK_STOP
    if not climb:
        # A command that causes no transition: the drive stays where it dropped.
        return {READY: SHUTDOWN, SWITCHED_ON: SWITCH_ON}.get(current, DISABLE_VOLTAGE)
    return {
        SWITCH_ON_DISABLED: SHUTDOWN,
        READY: SWITCH_ON,
        SWITCHED_ON: ENABLE_OPERATION,
    }.get(current, DISABLE_VOLTAGE)


def is_device_type_402(device_type: int) -> bool:
    """True when object 0x1000's value names a CiA 402 drive (low 16 bits 0x0192)."""
    return device_type & 0xFFFF == DEVICE_PROFILE_402
