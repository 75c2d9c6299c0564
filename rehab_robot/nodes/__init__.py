"""rehab_robot.nodes."""
