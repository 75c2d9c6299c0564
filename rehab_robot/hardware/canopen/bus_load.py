"""Bus load of a CANopen configuration, counted in frame bits with worst-case stuffing.

A CAN 2.0A (11-bit identifier) data frame with ``n`` data bytes has 47 + 8n bits:
SOF 1, identifier 11, RTR 1, IDE 1, r0 1, DLC 4, data 8n, CRC 15, CRC delimiter 1,
ACK slot and delimiter 2, EOF 7, and the 3-bit intermission before the next frame.
Bit stuffing covers SOF through the CRC (34 + 8n bits); at worst one stuff bit
follows the first 5 equal bits and then every 4 more, floor((34 + 8n - 1) / 4) bits.
"""

from __future__ import annotations

from dataclasses import dataclass


def frame_bits(data_bytes: int) -> int:
    """Worst-case bits [bit] of a base-format data frame with ``data_bytes`` (0-8) bytes,
    bit stuffing and intermission included."""
    if not 0 <= data_bytes <= 8:
        raise ValueError(f"a classic CAN frame carries 0 to 8 data bytes, not {data_bytes}")
    return 47 + 8 * data_bytes + (34 + 8 * data_bytes - 1) // 4


@dataclass(frozen=True)
class BusLoad:
    """The computed traffic of one configuration.

    Attributes:
        frames_per_second: Frames on the bus [1/s].
        bits_per_second: Bits on the bus, worst-case stuffing [bit/s].
        load: ``bits_per_second / bitrate``.
        per_cycle_bits: Bits of one SYNC cycle (SYNC + RPDOs + TPDOs) [bit].
    """

    frames_per_second: float
    bits_per_second: float
    load: float
    per_cycle_bits: int


def bus_load(rpdo_bytes: list[int], tpdo_bytes: list[int], drives: int, sync_rate: float,
             bitrate: int, heartbeat_time: float) -> BusLoad:
    """Compute the bus load of a cyclic CANopen configuration.

    Args:
        rpdo_bytes: Data bytes of each RPDO a drive receives every SYNC.
        tpdo_bytes: Data bytes of each TPDO a drive sends every SYNC.
        drives: Number of drives.
        sync_rate: SYNC frequency [Hz] (the driver's loop rate).
        bitrate: [bit/s].
        heartbeat_time: Each drive's heartbeat period [s] (1-byte frames).
    """
    cycle = frame_bits(0) + drives * (sum(map(frame_bits, rpdo_bytes)) + sum(map(frame_bits, tpdo_bytes)))
    frames = sync_rate * (1 + drives * (len(rpdo_bytes) + len(tpdo_bytes))) + drives / heartbeat_time
    bits = sync_rate * cycle + drives * frame_bits(1) / heartbeat_time
    return BusLoad(frames, bits, bits / bitrate, cycle)


def layout_bus_load(layout, drives: int, sync_rate: float, bitrate: int, heartbeat_time: float) -> BusLoad:
    """:func:`bus_load` of a :class:`~rehab_robot.hardware.canopen.config.PdoLayout`."""
    rpdo = [sum(m.bits for m in pdo) // 8 for pdo in layout.rpdos]
    tpdo = [sum(m.bits for m in pdo) // 8 for pdo in layout.tpdos]
    return bus_load(rpdo, tpdo, drives, sync_rate, bitrate, heartbeat_time)
