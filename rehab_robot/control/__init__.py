"""rehab_robot.control."""
