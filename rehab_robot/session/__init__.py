"""rehab_robot.session."""
