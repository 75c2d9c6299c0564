"""rehab_robot.recording: the session bag (rosbag2, MCAP storage, CDR messages)."""

from rehab_robot.recording.bag import (
    BagMessage,
    BagRecorder,
    RepairReport,
    read_bag,
    repair_bag,
)

__all__ = ["BagMessage", "BagRecorder", "RepairReport", "read_bag", "repair_bag"]
