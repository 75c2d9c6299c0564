"""An in-process closed loop for tests and benchmarks: SimulatedArm + InteractionController.

Deterministic and fast: the simulator follows a fake clock that the loop advances by one
controller period per cycle, so no real time passes. A command computed from the sample
at cycle k reaches the drives ``latency_cycles`` cycles later, like a command that
crosses DDS to the driver and waits for its next cycle.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from rehab_robot.control.interaction import InteractionController
from rehab_robot.control.modes import InteractionState, Reference
from rehab_robot.control.settings import InteractionSettings
from rehab_robot.control.trajectory import QuinticSegment
from rehab_robot.hardware.sim import SimulatedArm


@dataclass
class Record:
    """What one closed-loop run recorded, one row per controller cycle.

    Attributes:
        t: Cycle times [s].
        q: Measured joint positions [rad].
        v: Measured joint velocities [rad/s].
        wrench: Cuff wrench in ``ft_sensor_link`` [N, N·m].
        interaction_force: Interaction force the controller estimated, ``base_link`` [N].
        patient_torque: Joint torques of the virtual patient's muscles [N·m].
        command_position: Commanded positions [rad].
        mode_torque: The active mode's own torque (assistance or resistance) [N·m].
        events: Controller events, in order.
    """

    t: list = field(default_factory=list)
    q: list = field(default_factory=list)
    v: list = field(default_factory=list)
    wrench: list = field(default_factory=list)
    interaction_force: list = field(default_factory=list)
    patient_torque: list = field(default_factory=list)
    command_position: list = field(default_factory=list)
    mode_torque: list = field(default_factory=list)
    events: list = field(default_factory=list)

    def arrays(self) -> dict[str, np.ndarray]:
        """Every series as a numpy array."""
        return {k: np.array(v) for k, v in self.__dict__.items() if k != "events"}


class ClosedLoop:
    """The simulated arm driven by the interaction controller in simulated time.

    Args:
        settings: Changes to the default interaction settings (ROS names -> values).
        rate: Controller rate [Hz].
        latency_cycles: Cycles between a sample and the drives applying its command.
        **sim_options: Options of :class:`~rehab_robot.hardware.sim.SimulatedArm`
            (e.g. ``virtual_patient``, ``initial_position``).
    """

    def __init__(self, settings: Optional[dict] = None, rate: float = 500.0, latency_cycles: int = 1,
                 **sim_options) -> None:
        self.now = 0.0
        self.arm = SimulatedArm(clock=lambda: self.now, **sim_options)
        model = self.arm.robot
        self.dt = 1.0 / rate
        self.settings = InteractionSettings.defaults(model.lower, model.upper).updated(settings or {})
        self.controller = InteractionController(model, self.settings, self.dt)
        self.latency_cycles = latency_cycles
        self._pending: deque = deque()
        self.reference_segment: Optional[QuinticSegment] = None
        self.reference_t0 = 0.0
        self.record = Record()
        self.arm.enable()

    def set_reference(self, start, end, duration: float) -> None:
        """Start a minimum-jerk reference from ``start`` to ``end`` [rad] over ``duration`` [s] now."""
        self.reference_segment = QuinticSegment.minimum_jerk(start, end, duration)
        self.reference_t0 = self.now

    def reference(self) -> Optional[Reference]:
        """The reference sampled now, or None."""
        seg = self.reference_segment
        if seg is None:
            return None
        elapsed = self.now - self.reference_t0
        q, v, a = seg.sample(elapsed)
        return Reference(q, v, a, seg.sample(0.0)[0], seg.end, elapsed, seg.duration)

    def configure(self, changes: dict, mode_set: bool = False) -> None:
        """Change settings (ROS names -> values) as the node does."""
        self.settings = self.settings.updated(changes)
        self.controller.configure(self.settings, mode_set or "mode" in changes)

    def run(self, duration: float, each_cycle: Optional[Callable[["ClosedLoop"], None]] = None,
            wrench_filter: Optional[Callable[[float, np.ndarray], Optional[np.ndarray]]] = None) -> Record:
        """Run ``duration`` [s] of simulated time; return the (cumulative) record.

        Args:
            duration: Simulated time [s].
            each_cycle: Called before every cycle (e.g. to move the patient's target).
            wrench_filter: Replaces the wrench the controller sees (e.g. NaN injection).
        """
        steps = int(round(duration / self.dt))
        rec = self.record
        for _ in range(steps):
            if each_cycle is not None:
                each_cycle(self)
            self.now += self.dt
            sample = self.arm.read()
            wrench = sample.wrench if wrench_filter is None else wrench_filter(self.now, sample.wrench)
            state = InteractionState(sample.stamp, sample.position, sample.velocity, wrench)
            command = self.controller.step(state, self.reference())
            self._pending.append(command)
            if len(self._pending) > self.latency_cycles:
                self.arm.write(self._pending.popleft())
            rec.t.append(self.now)
            rec.q.append(sample.position)
            rec.v.append(sample.velocity)
            rec.wrench.append(sample.wrench)
            rec.interaction_force.append(self.controller.interaction_force.copy())
            rec.patient_torque.append(self.arm.patient_torque)
            rec.command_position.append(command.position)
            rec.mode_torque.append(np.array(getattr(self.controller.mode, "torque", np.zeros(4)), dtype=float))
            rec.events.extend(self.controller.events)
            self.controller.events.clear()
        return rec
