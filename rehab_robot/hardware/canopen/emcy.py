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
