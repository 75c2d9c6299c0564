"""Conversions between ROS messages and the plain arrays of the core modules."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from builtin_interfaces.msg import Duration
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from rehab_robot.control.trajectory import SampledTrajectory


def joint_arrays(msg: JointState, joint_names: Sequence[str], fields: Sequence[str]) -> list[np.ndarray]:
    """Return the requested fields of ``msg`` (``position``, ``velocity``, ``effort``)
    as arrays in ``joint_names`` order.

    Raises:
        ValueError: naming what is wrong, if a joint is missing or a field has the wrong length.
    """
    try:
        index = [list(msg.name).index(name) for name in joint_names]
    except ValueError:
        raise ValueError(
            f"joint names {list(msg.name)} do not cover the arm's joints {list(joint_names)}"
        ) from None
    arrays = []
    for field in fields:
        values = getattr(msg, field)
        if len(values) != len(msg.name):
            raise ValueError(f"{field} has {len(values)} values for {len(msg.name)} joints")
        arrays.append(np.asarray(values, dtype=float)[index])
    return arrays


def joint_state_msg(msg: JointState, joint_names: Sequence[str], position, velocity, effort) -> JointState:
    """Fill ``msg`` (header left to the caller) with arrays in ``joint_names`` order."""
    msg.name = list(joint_names)
    msg.position = [float(x) for x in position]
    msg.velocity = [float(x) for x in velocity]
    msg.effort = [float(x) for x in effort]
    return msg


def duration_msg(seconds: float) -> Duration:
    """Return ``seconds`` [s] as a builtin_interfaces/Duration."""
    # Round the total first: rounding only the fraction turned 0.9999999999 s into 0 s.
    sec, nanosec = divmod(int(round(seconds * 1e9)), 1_000_000_000)
    return Duration(sec=sec, nanosec=nanosec)


def trajectory_msg(joint_names: Sequence[str], trajectory: SampledTrajectory) -> JointTrajectory:
    """Return ``trajectory`` as a trajectory_msgs/JointTrajectory (stamp left zero: start on receipt)."""
    msg = JointTrajectory(joint_names=list(joint_names))
    for t, q, v, a in zip(trajectory.times, trajectory.positions, trajectory.velocities, trajectory.accelerations):
        msg.points.append(
            JointTrajectoryPoint(
                positions=[float(x) for x in q],
                velocities=[float(x) for x in v],
                accelerations=[float(x) for x in a],
                time_from_start=duration_msg(float(t)),
            )
        )
    return msg


def sampled_trajectory(msg: JointTrajectory) -> SampledTrajectory:
    """Return the waypoints of ``msg`` as a :class:`SampledTrajectory`.

    Missing velocities or accelerations are taken as zero.

    Raises:
        ValueError: naming the point and field, for empty trajectories, wrong sizes,
            NaN/inf, or times that are negative or not increasing.
    """
    n = len(msg.joint_names)
    if n == 0 or len(set(msg.joint_names)) != n:
        raise ValueError("trajectory must name each joint once")
    if not msg.points:
        raise ValueError("trajectory has no points")
    times, columns = [], {"positions": [], "velocities": [], "accelerations": []}
    for i, point in enumerate(msg.points):
        times.append(point.time_from_start.sec + point.time_from_start.nanosec * 1e-9)
        for field, column in columns.items():
            values = list(getattr(point, field)) or ([0.0] * n if field != "positions" else [])
            if len(values) != n:
                raise ValueError(f"point {i}: {field} has {len(values)} values for {n} joints")
            if not np.all(np.isfinite(values)):
                raise ValueError(f"point {i}: {field} holds NaN or inf")
            column.append(values)
    times = np.array(times)
    if times[0] < 0 or np.any(np.diff(times) <= 0):
        raise ValueError("time_from_start must be >= 0 and strictly increasing")
    return SampledTrajectory(
        times,
        np.array(columns["positions"]),
        np.array(columns["velocities"]),
        np.array(columns["accelerations"]),
    )
