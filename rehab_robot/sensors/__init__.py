"""Sensors other than the arm's drives, as plain modules (no rclpy): protocols and signal processing."""
