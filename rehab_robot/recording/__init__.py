"""rehab_robot.recording."""
