"""Emulated devices: each one a device built from its published specification.

An emulator shares no code with the backend that talks to it, runs in its own
process (``rehab-robot emulate DEVICE ...``) behind a real OS channel (a
pseudo-terminal, a local socket), and can inject the device's faults on command.
Each module here provides ``main(argv: list[str]) -> int``.
"""
