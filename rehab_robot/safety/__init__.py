"""rehab_robot.safety."""
