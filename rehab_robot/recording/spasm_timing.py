"""Spasm onset to reaction, from a session bag's own timestamps.

A plain module (rosbags, no rclpy): bench/bench_spasm.py and the integration test read a
real session's bag with it. The stamps used:

* **onset in the bag**: the first ``ft_sensor/wrench`` sample (header stamp, the driver's
  sample time) whose force departs from its course before the spasm by more than a tenth
  of the spasm's largest departure (:func:`departure_onset`); the same from the exercised
  joint's torque in ``joint_states`` (``effort``, the motor torque the drive applies
  against the push); the earlier of the two is *the* onset;
* **the controller's event** on ``controller/events`` (name ``spasm``): its ``onset`` value
  (ROS time of the first sample the detector counted), its detection
  (``onset + reaction_latency_ms``: the cycle that reacted) and the time the recorder
  received it (the bag's log time);
* **the first reaction command**: the first ``joint_commands`` message stamped at or after
  the detection (the controller publishes the reaction's command in the cycle that
  detected the spasm), by its header stamp and by the time the recorder received it.

All times are ROS time [s] (the system clock); the durations are returned in ms.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import numpy as np

__all__ = ["departure_onset", "spasm_timing"]


def departure_onset(t: np.ndarray, x: np.ndarray, reference_time: float, before: float = 0.15,
                    gap: float = 0.04, window: float = 0.3, onset_fraction: float = 0.1) -> Optional[float]:
    """Return when the signal ``x`` first departs from its course before ``reference_time``.

    The course is a straight line fitted (least squares, per component) to ``x`` over
    ``[reference_time - before, reference_time - gap]`` [s] and extrapolated: a force that
    changes steadily with the motion is not an onset. The departure is the distance of
    ``x`` from that line (the norm per row for a vector signal). The onset is the first
    sample from ``reference_time - gap`` on whose departure exceeds ``onset_fraction`` of
    the largest departure up to ``reference_time + window``.

    Args:
        t: Sample times [s], increasing.
        x: Samples, one row (or value) per time.
        reference_time: A time [s] at most ``gap`` after the true onset (e.g. the detector's
            onset, which lies inside the spasm's rise).
        before, gap, window: Seconds [s] before and after ``reference_time`` looked at.
        onset_fraction: Share of the largest departure that counts as the onset, in (0, 1).

    Returns:
        The onset [s], or None when the windows hold too few samples.
    """
    t = np.asarray(t, dtype=float)
    x = np.asarray(x, dtype=float).reshape(len(t), -1)
    base = (t >= reference_time - before) & (t < reference_time - gap)
    after = (t >= reference_time - gap) & (t <= reference_time + window)
    if base.sum() < 3 or not after.any():
        return None
    tb = t[base] - reference_time
    design = np.c_[np.ones_like(tb), tb]
    coef, *_ = np.linalg.lstsq(design, x[base], rcond=None)
    course = np.c_[np.ones(after.sum()), t[after] - reference_time] @ coef
    departure = np.linalg.norm(x[after] - course, axis=1)
    if departure.max() <= 0.0:
        return None
    first = int(np.argmax(departure > onset_fraction * departure.max()))
    return float(t[after][first])


def spasm_timing(bag: Union[str, Path], joint: str = "elbow_flexion") -> dict:
    """Read a session bag and return the first spasm's onset-to-reaction times.

    Args:
        bag: The session's bag folder.
        joint: The joint whose torque in ``joint_states`` marks the onset too.

    Returns:
        ``event`` (the spasm event's values, None without one) and, with an event:
        ``onset_wrench``, ``onset_torque``, ``controller_onset``, ``detected``,
        ``event_received``, ``command_stamp``, ``command_received`` and ``onset`` (the
        earlier of the two onsets) [s, ROS time; None where the bag lacks it]; in [ms] from
        ``onset``: ``to_controller_onset_ms``, ``to_detection_ms``, ``to_event_received_ms``,
        ``to_command_ms``, ``to_command_received_ms``; ``wrench_onset_to_command_ms`` and
        ``torque_onset_to_command_ms``; ``samples`` (wrench, joint_states, joint_commands
        messages in the bag).
    """
    from rosbags.highlevel import AnyReader

    wrench_t, wrench, states_t, torque, commands_t, commands_rx = [], [], [], [], [], []
    event = None
    event_rx = None
    topics = ("/ft_sensor/wrench", "/joint_states", "/joint_commands", "/controller/events")
    with AnyReader([Path(bag)]) as reader:
        connections = [c for c in reader.connections if c.topic in topics]
        for connection, log_ns, raw in reader.messages(connections=connections):
            msg = reader.deserialize(raw, connection.msgtype)
            if connection.topic == "/controller/events":
                if event is None and msg.name == "spasm":
                    event = {kv.key: kv.value for kv in msg.values}
                    event_rx = log_ns * 1e-9
                continue
            stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
            if connection.topic == "/ft_sensor/wrench":
                f = msg.wrench.force
                wrench_t.append(stamp)
                wrench.append((f.x, f.y, f.z))
            elif connection.topic == "/joint_states":
                if joint in msg.name and len(msg.effort) == len(msg.name):
                    states_t.append(stamp)
                    torque.append(msg.effort[list(msg.name).index(joint)])
            else:
                commands_t.append(stamp)
                commands_rx.append(log_ns * 1e-9)
    result: dict = {"event": event, "samples": {"wrench": len(wrench_t), "joint_states": len(states_t),
                                                "joint_commands": len(commands_t)}}
    if event is None:
        return result
    controller_onset = float(event["onset"])
    detected = controller_onset + float(event.get("reaction_latency_ms", "nan")) * 1e-3
    order = np.argsort(wrench_t)
    onset_wrench = departure_onset(np.array(wrench_t)[order], np.array(wrench)[order], controller_onset) \
        if wrench_t else None
    order = np.argsort(states_t)
    onset_torque = departure_onset(np.array(states_t)[order], np.array(torque)[order], controller_onset) \
        if states_t else None
    command_stamp = command_received = None
    if commands_t and np.isfinite(detected):
        stamps = np.array(commands_t)
        later = np.flatnonzero(stamps >= detected - 1e-6)
        if len(later):
            k = later[np.argmin(stamps[later])]
            command_stamp, command_received = float(stamps[k]), float(commands_rx[k])
    result.update({"onset_wrench": onset_wrench, "onset_torque": onset_torque,
                   "controller_onset": controller_onset, "detected": detected, "event_received": event_rx,
                   "command_stamp": command_stamp, "command_received": command_received})

    onsets = [x for x in (onset_wrench, onset_torque) if x is not None]
    onset = min(onsets) if onsets else None
    result["onset"] = onset

    def ms(a, b):
        return None if a is None or b is None else 1e3 * (b - a)

    result.update({"to_controller_onset_ms": ms(onset, controller_onset),
                   "to_detection_ms": ms(onset, detected),
                   "to_event_received_ms": ms(onset, event_rx),
                   "to_command_ms": ms(onset, command_stamp),
                   "to_command_received_ms": ms(onset, command_received),
                   "wrench_onset_to_command_ms": ms(onset_wrench, command_stamp),
                   "torque_onset_to_command_ms": ms(onset_torque, command_stamp)})
    return result
