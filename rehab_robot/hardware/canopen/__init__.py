"""The ``canopen`` hardware backend: CiA 402 drives in cyclic synchronous position mode.

Modules: :mod:`.config` (the configuration file and unit conversions), :mod:`.bus_load`
(frame bits and bus load), :mod:`.cia402` (drive state machine), :mod:`.emcy` (EMCY
texts), plain and unit-tested; :mod:`.backend` (the :class:`CanopenArm` backend).
"""

from rehab_robot.hardware.canopen.backend import CanopenArm

__all__ = ["CanopenArm"]
