"""rehab_robot: a ROS 2 control stack for an upper-limb rehabilitation arm."""

__version__ = "0.1.0"

#: Joint names of the arm, in the order used on every topic.
JOINT_NAMES = (
    "shoulder_flexion",
    "shoulder_abduction",
    "shoulder_rotation",
    "elbow_flexion",
)
