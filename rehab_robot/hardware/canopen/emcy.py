"""EMCY error codes (CiA 301 table 21, CiA 402-2 table 2) as text for diagnostics."""

from __future__ import annotations

#: Error code -> text, most specific first; :func:`emcy_text` falls back to the class.
CODES = {
    0x0000: "error reset or no error",
    0x1000: "generic error",
    0x2110: "short circuit / earth leakage (input)",
    0x2120: "earth leakage (input)",
    0x2211: "internal over-current",
    0x2214: "over-current during start-up",
    0x2220: "continuous over-current (device internal)",
    0x2221: "continuous over-current no. 1",
    0x2230: "short circuit / earth leakage (device internal)",
    0x2240: "earth leakage (device internal)",
    0x2250: "short circuit (device internal)",
    0x2310: "continuous over-current",
    0x2311: "continuous over-current no. 1",
    0x2312: "continuous over-current no. 2",
    0x2320: "short circuit / earth leakage (motor side)",
    0x2330: "earth leakage (motor side)",
    0x2340: "short circuit (motor side)",
    0x3110: "mains over-voltage",
    0x3120: "mains under-voltage",
    0x3130: "phase failure",
    0x3210: "DC link over-voltage",
    0x3220: "DC link under-voltage",
    0x4210: "excess temperature device",
    0x4310: "excess temperature drive",
    0x4410: "excess temperature supply",
    0x5112: "supply low voltage (U2 = +24 V)",
    0x5400: "power section",
    0x5530: "data storage (non-volatile memory) error",
    0x6010: "software reset (watchdog)",
    0x6320: "parameter error",
    0x7110: "brake chopper failure",
    0x7120: "motor error",
    0x7121: "motor blocked",
    0x7300: "sensor error",
    0x7305: "incremental sensor 1 fault",
    0x7310: "speed sensor error",
    0x7320: "position sensor error",
    0x8110: "CAN overrun (objects lost)",
    0x8120: "CAN in error passive mode",
    0x8130: "life guard or heartbeat error",
    0x8140: "recovered from bus-off",
    0x8150: "CAN-ID collision",
    0x8210: "PDO not processed due to length error",
    0x8220: "PDO length exceeded",
    0x8240: "unexpected SYNC data length",
    0x8250: "RPDO timeout",
    0x8611: "following error",
    0x8612: "reference limit",
    0x8700: "sync controller error",
    0xFF00: "device specific",
}

#: Error code classes (high byte, or high nibble) for codes not listed.
_CLASSES = (
    (0xFF00, 0x1000, "generic error"),
    (0xF000, 0x2000, "current error"),
    (0xF000, 0x3000, "voltage error"),
    (0xF000, 0x4000, "temperature error"),
    (0xF000, 0x5000, "device hardware error"),
    (0xF000, 0x6000, "device software error"),
    (0xFF00, 0x7000, "additional modules error"),
    (0xF000, 0x7000, "additional modules error"),
    (0xF000, 0x8000, "monitoring error"),
    (0xFF00, 0x9000, "external error"),
    (0xFF00, 0xF000, "additional functions error"),
    (0xFF00, 0xFF00, "device specific error"),
)

#: Error register (0x1001) bits.
REGISTER_BITS = {0: "generic", 1: "current", 2: "voltage", 3: "temperature", 4: "communication",
                 5: "device profile specific", 7: "manufacturer specific"}


def emcy_text(code: int) -> str:
    """Return the text of an EMCY error code, e.g. 0x2310 -> "continuous over-current"."""
    if code in CODES:
        return CODES[code]
    for mask, value, text in _CLASSES:
        if code & mask == value:
            return f"{text} (code not listed)"
    return "unknown error code"


def register_text(register: int) -> str:
    """Return the set bits of an error register (0x1001) as text."""
    names = [REGISTER_BITS.get(b, f"bit {b}") for b in range(8) if register & (1 << b)]
    return ", ".join(names) if names else "none"


#: SocketCAN error frame classes (linux/can/error.h), as python-can reports them in
#: ``Message.arbitration_id`` of an error frame.
_ERROR_CLASSES = {
    0x001: "TX timeout", 0x002: "arbitration lost", 0x004: "controller problem", 0x008: "protocol violation",
    0x010: "transceiver status", 0x020: "no ACK on transmission", 0x040: "bus-off", 0x080: "bus error",
    0x100: "controller restarted",
}
#: Controller problem details (``data[1]`` of a controller-problem error frame).
_CONTROLLER = {0x01: "RX overflow", 0x02: "TX overflow", 0x04: "RX error warning", 0x08: "TX error warning",
               0x10: "RX error passive", 0x20: "TX error passive", 0x40: "back to error active"}


def error_frame(flags: int, data: bytes) -> tuple[str, str]:
    """Classify an error frame: return (text, severity).

    Severity: ``"bus-off"`` (the controller left the bus: nothing can be sent),
    ``"passive"`` (error passive: the bus is failing), or ``"counted"`` (a single error,
    which CAN recovers from by retransmission).
    """
    data = bytes(data) + bytes(8)
    names = [text for bit, text in _ERROR_CLASSES.items() if flags & bit]
    if flags & 0x004:
        names += [text for bit, text in _CONTROLLER.items() if data[1] & bit]
    text = ", ".join(names) or f"error frame 0x{flags:X}"
    if flags & 0x040:
        return text, "bus-off"
    if flags & 0x004 and data[1] & 0x30:
        return text, "passive"
    return text, "counted"
