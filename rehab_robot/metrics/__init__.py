"""Movement-quality metrics for rehabilitation research: pure functions, no rclpy.

Each metric takes numpy arrays (time stamps [s], joint or Cartesian samples in SI
units), checks them (NaN/inf, length, uniform sampling where the definition needs
it: a ValueError naming the problem) and returns a number or a small named tuple.
Formulas, units and references: each function's docstring and docs/metrics.md.
"""

from rehab_robot.metrics.interaction import (
    WorkShare,
    mean_interaction_force,
    peak_interaction_force,
    work_share,
)
from rehab_robot.metrics.isometric import isometric_peak_torque, sustained_torque
from rehab_robot.metrics.kinematics import (
    RangeOfMotion,
    max_path_deviation,
    movement_bounds,
    movement_time,
    path_length_ratio,
    peak_speed,
    range_of_motion,
)
from rehab_robot.metrics.sampling import resample
from rehab_robot.metrics.smoothness import ldlj, sparc

__all__ = [
    "RangeOfMotion",
    "WorkShare",
    "isometric_peak_torque",
    "ldlj",
    "max_path_deviation",
    "mean_interaction_force",
    "movement_bounds",
    "movement_time",
    "path_length_ratio",
    "peak_interaction_force",
    "peak_speed",
    "range_of_motion",
    "resample",
    "sparc",
    "sustained_torque",
    "work_share",
]
