"""The control modes of the motion controller, one class each, behind :class:`ControlMode`."""

from rehab_robot.control.modes.active import ActiveMode
from rehab_robot.control.modes.active_assist import ActiveAssistMode
from rehab_robot.control.modes.base import ControlMode, Effort, InteractionState, Reference
from rehab_robot.control.modes.isometric import IsometricMode
from rehab_robot.control.modes.path_guidance import PathGuidanceMode
from rehab_robot.control.modes.position import PositionMode
from rehab_robot.control.modes.resistive import ResistiveMode

#: Mode class by ``mode`` parameter value.
MODE_CLASSES = {cls.name: cls for cls in (
    PositionMode, ActiveMode, ActiveAssistMode, ResistiveMode, IsometricMode, PathGuidanceMode)}

__all__ = ["MODE_CLASSES", "ActiveAssistMode", "ActiveMode", "ControlMode", "Effort", "InteractionState",
           "IsometricMode", "PathGuidanceMode", "PositionMode", "Reference", "ResistiveMode"]
