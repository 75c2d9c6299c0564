"""InteractionController: the interaction loop of the motion controller, plain Python.

Each cycle takes the measurement (joint state and cuff wrench) and the reference, and
returns the drives' setpoint (position, velocity, feed-forward torque). It owns

* the current control mode (:mod:`rehab_robot.control.modes`), switched bumplessly and
  only at rest by :meth:`InteractionController.configure`;
* the admittance (:class:`~rehab_robot.control.admittance.CuffAdmittance`) that the
  interaction modes shape, with the soft walls and the limb's weight support;
* the safety reactions: a spasm (:class:`~rehab_robot.control.spasm.SpasmDetector`)
  makes it hold compliantly or return slowly to the start posture; a soft wall pushed
  beyond its torque limit makes a protective stop (stiff hold). A reaction stays until
  the mode is set again, and is announced by a :class:`ControllerEvent`;
* the missing-signal rule: a wrench or state holding NaN/inf, or no wrench where the
  mode needs one, holds the arm where it is commanded (the reason is in
  :attr:`InteractionController.signal_problem`).

While motion is not permitted the node calls :meth:`InteractionController.follow`;
the next enabled cycle restarts the mode, the admittance and the detector from where
the arm is (integrators and onset state reset on every re-enable).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from rehab_robot.control.admittance import CuffAdmittance, joint_levers
from rehab_robot.control.gravity import holding_torque, limb_weight_torque
from rehab_robot.control.kinematics import CuffKinematics
from rehab_robot.control.laws import CommandLimits, limit_command
from rehab_robot.control.modes import MODE_CLASSES, ControlMode, InteractionState, Reference
from rehab_robot.control.settings import InteractionSettings
from rehab_robot.control.soft_walls import SoftWalls
from rehab_robot.control.spasm import SpasmDetector
from rehab_robot.control.trajectory import QuinticSegment, minimum_jerk_duration
from rehab_robot.hardware.interface import JointCommand

#: Joint speed [rad/s] below which the arm counts as at rest (mode switches need rest).
REST_SPEED = 0.05
#: Stiffness [N·m/rad] and damping [N·m·s/rad] of the compliant hold after a spasm:
#: the arm yields to the contraction and drifts back toward where it was when it relaxes.
COMPLIANT_HOLD_STIFFNESS = 10.0
COMPLIANT_HOLD_DAMPING = 2.0
#: Joint speed [rad/s] above which a joint's motion gives the spasm detector its direction.
MOTION_SPEED = 0.05
#: Speed [rad/s] over which the dry-friction feed-forward ramps up (tanh), as in the simulator.
FRICTION_SMOOTHING = 0.05


@dataclass(frozen=True)
class ControllerEvent:
    """An event for ``controller/events``.

    Attributes:
        name: ``spasm``, ``soft_wall_limit`` or ``mode``.
        message: One human line.
        warn: True for a warning (spasm, wall), False for information (mode).
        values: Key/values: ``joint``, ``force`` [N] or ``torque`` [N·m], ``onset`` [s], ``reaction``.
        detected: Time [s] of the sample at which the controller reacted.
    """

    name: str
    message: str
    warn: bool
    values: dict = field(default_factory=dict)
    detected: float = 0.0


class InteractionController:
    """The interaction loop (see module docstring).

    Args:
        model: The robot's :class:`~rehab_robot.model.ArmModel`.
        settings: The interaction settings.
        dt: Cycle period [s].
    """

    def __init__(self, model, settings: InteractionSettings, dt: float) -> None:
        self.model = model
        self.dt = float(dt)
        self.n = model.nq
        self.limits = CommandLimits(model.lower, model.upper, model.velocity_limit, model.effort_limit)
        self.admittance = CuffAdmittance(model.lower, model.upper, self._speed_limit(settings))
        self._viscous = np.array(model.pin_model.damping, dtype=float)
        self._dry = np.array(model.pin_model.friction, dtype=float)
        self.settings = settings
        self.mode: ControlMode = MODE_CLASSES[settings.mode](settings, self.n)
        self.walls = self._walls(settings)
        self.spasm = SpasmDetector(settings.spasm_force_threshold, settings.spasm_force_rate)
        self.events: list[ControllerEvent] = []
        self.setpoint: Optional[np.ndarray] = None
        #: Latched reaction: "", "compliant_hold", "return_to_start" or "protective_stop".
        self.reaction = ""
        self.signal_problem = ""
        #: The patient's push as the cuff force with the same joint torques, base_link [N]
        #: (the sensor's force and moment together; what the spasm detector watches).
        self.interaction_force = np.zeros(3)
        #: The sensor's force less the forearm's modelled weight, base_link [N].
        self.cuff_force = np.zeros(3)
        #: The patient's push as joint torques [N·m] (sensor wrench less the forearm's weight).
        self.interaction_torque = np.zeros(self.n)
        #: The patient's push, limb weight support and inertia compensation the admittance took
        #: in the last cycle, as joint torque [N·m] (before walls and mode torques).
        self.input_torque = np.zeros(self.n)
        self._enabled = False
        self._hold = np.zeros(self.n)
        self._return: Optional[QuinticSegment] = None
        self._return_t0 = 0.0
        self._mode_start: Optional[np.ndarray] = None
        self._last_velocity: Optional[tuple[float, np.ndarray]] = None

    @staticmethod
    def _walls(s: InteractionSettings) -> SoftWalls:
        return SoftWalls(s.soft_wall_lower, s.soft_wall_upper, s.soft_wall_stiffness, s.soft_wall_damping,
                         s.soft_wall_torque_limit)

    # -- configuration -------------------------------------------------------

    def configure(self, settings: InteractionSettings, mode_set: bool) -> None:
        """Take new settings; ``mode_set``: the ``mode`` parameter was set (same value or not).

        Setting the mode ends a latched reaction and restarts the mode bumplessly from the
        current setpoint (the caller checks that the arm is at rest).
        """
        self.settings = settings
        self.walls = self._walls(settings)
        self.admittance.velocity_limit = self._speed_limit(settings)
        self.spasm.force_threshold = settings.spasm_force_threshold
        self.spasm.force_rate = settings.spasm_force_rate
        if mode_set:
            previous = self.mode.name
            self.mode = MODE_CLASSES[settings.mode](settings, self.n)
            self.reaction = ""
            self._return = None
            self._mode_start = None
            self._enabled = False  # the next step restarts everything from the setpoint
            self.events.append(ControllerEvent(
                "mode", f"mode {settings.mode}" + (f" (was {previous})" if previous != settings.mode else ""),
                False, {"mode": settings.mode, "previous": previous}))
        else:
            self.mode.configure(settings)

    def follow(self, q) -> None:
        """Motion is not permitted: follow the measured position [rad]; restart on re-enable."""
        q = np.asarray(q, dtype=float)
        if np.all(np.isfinite(q)):
            self.setpoint = q.copy()
        self._enabled = False

    # -- the cycle -----------------------------------------------------------

    def step(self, state: InteractionState, reference: Optional[Reference]) -> JointCommand:
        """Return the drives' setpoint for ``state``; new events go to :attr:`events`."""
        finite_state = bool(np.all(np.isfinite(state.q)) and np.all(np.isfinite(state.v)))
        if self.setpoint is None:
            if not finite_state:
                raise ValueError("no finite joint state yet: the controller has no position to hold")
            self.setpoint = np.array(state.q, dtype=float)
        if not finite_state:
            return self._missing("joint state holds NaN or inf", state)
        if state.wrench is not None and not np.all(np.isfinite(state.wrench)):
            return self._missing("cuff wrench holds NaN or inf", state)
        needs_wrench = self.mode.admittance or self.reaction == "compliant_hold"
        if state.wrench is None and needs_wrench:
            return self._missing("no cuff wrench", state)
        self.signal_problem = "" if state.wrench is not None else "no cuff wrench: spasm detection off"

        if not self._enabled:
            self._restart(state, reference)
        kin = CuffKinematics.at(self.model, state.q)
        s = self.settings
        inertia = self._forearm_inertia_torque(state, kin)
        if state.wrench is not None:
            self.cuff_force = kin.force_in_base(state.wrench) - kin.forearm_load_force(s.limb_masses[1])
            # The patient's own push: the sensor less the forearm's weight and inertia.
            self.interaction_torque = kin.wrench_torque(state.wrench) + kin.limb_gravity(s.limb_masses)[1] + inertia
            self.interaction_force = kin.equivalent_force(self.interaction_torque)
            if not self.reaction:
                self._watch_spasm(state, kin, reference)
        if not self.reaction and self.mode.admittance:
            joint = self.walls.broken_through(state.q, state.v)
            if joint is not None:
                self._react_wall(state, joint)

        if self.reaction in ("protective_stop",):
            position, velocity, acceleration = self._hold.copy(), np.zeros(self.n), np.zeros(self.n)
        elif self.reaction == "return_to_start":
            position, velocity, acceleration = self._return.sample(state.t - self._return_t0)
        elif self.reaction == "compliant_hold" or self.mode.admittance:
            position, velocity, acceleration = self._admittance_step(state, kin, reference, inertia)
        else:
            position, velocity, acceleration = self.mode.setpoint(state, reference)
        effort = holding_torque(self.model, kin, s.limb_masses, velocity, acceleration)
        if self.mode.admittance or self.reaction == "compliant_hold":
            effort = effort + self._viscous * velocity + self._dry * np.tanh(velocity / FRICTION_SMOOTHING)
        command = limit_command(JointCommand(np.asarray(position, dtype=float), np.asarray(velocity, dtype=float),
                                             effort), self.limits)
        self.setpoint = command.position.copy()
        return command

    def _speed_limit(self, settings: InteractionSettings) -> np.ndarray:
        """Largest joint speed [rad/s] of the admittance setpoint: the arm's limit, and the patient's cap."""
        return np.minimum(np.asarray(self.model.velocity_limit, dtype=float), settings.admittance_max_speed)

    def _admittance_step(self, state, kin, reference, inertia):
        s = self.settings
        adm = self.admittance
        torque = (kin.wrench_torque(state.wrench) + limb_weight_torque(kin, s.limb_masses, s.weight_support)
                  + inertia)
        self.input_torque = torque.copy()
        walls = self.walls.effort(adm.position, adm.velocity)
        joint_torque, joint_damping = walls.torque, np.diag(walls.damping)
        if self.reaction == "compliant_hold":
            joint_torque = joint_torque + COMPLIANT_HOLD_STIFFNESS * (self._hold - adm.position)
            joint_damping = joint_damping + COMPLIANT_HOLD_DAMPING * np.eye(self.n)
        else:
            extra = self.mode.effort(state, kin, adm.velocity, reference)
            if extra.at_cuff:
                # A cuff force's damping acts on the cuff body: fold it in as torque now.
                torque = torque + extra.torque - extra.damping @ adm.velocity
            else:
                joint_torque, joint_damping = joint_torque + extra.torque, joint_damping + extra.damping
        adm.step(kin.cuff_jacobian, s.admittance_mass, s.admittance_damping, torque, joint_torque,
                 joint_damping, self.dt)
        return adm.position.copy(), adm.velocity.copy(), adm.acceleration.copy()

    def _forearm_inertia_torque(self, state, kin) -> np.ndarray:
        """Joint torque [N·m] that cancels the forearm's inertia in the cuff reading.

        The forearm hangs in the cuff, so the sensor feels its inertial force -m a. Fed back
        into a virtual mass lighter than the forearm, that force would make the loop ring
        (the drives' lag turns it into positive feedback). It is cancelled with the measured
        acceleration (finite difference of the measured velocities), for the forearm mass of
        ``limb_masses`` modelled as a point at its centre of mass.
        """
        previous, self._last_velocity = self._last_velocity, (state.t, np.array(state.v, dtype=float))
        mass = self.settings.limb_masses[1]
        if previous is None or mass == 0.0 or not state.t > previous[0]:
            return np.zeros(self.n)
        acceleration = (state.v - previous[1]) / (state.t - previous[0])
        J = kin.forearm_com_jacobian
        return mass * (J.T @ (J @ acceleration))

    def _restart(self, state, reference) -> None:
        # Bumpless: from the last setpoint (after a stop: where the arm is), at rest.
        start = self.setpoint.copy()
        self.admittance.reset(start)
        self.spasm.reset()
        self._last_velocity = None
        self.mode.reset(state, start, reference)
        if self._mode_start is None or not self.reaction:
            self._mode_start = start.copy()
        if self.reaction == "return_to_start":
            self._plan_return(state, reference)
        elif self.reaction:
            self._hold = start.copy()
        self._enabled = True

    def _missing(self, problem: str, state) -> JointCommand:
        """Hold at the setpoint, at rest; restart cleanly when the signal is back."""
        self.signal_problem = problem
        self._enabled = False
        self.spasm.reset()
        q = self.setpoint
        effort = self.model.gravity_torques(q) if not np.all(np.isfinite(state.q)) else \
            holding_torque(self.model, CuffKinematics.at(self.model, state.q), self.settings.limb_masses,
                           np.zeros(self.n), np.zeros(self.n))
        return limit_command(JointCommand(q.copy(), np.zeros(self.n), effort), self.limits)

    # -- reactions -----------------------------------------------------------

    def _watch_spasm(self, state, kin, reference) -> None:
        joint_forces = self.interaction_torque / joint_levers(kin.cuff_jacobian)
        # resistive's reference is only the short move to its start posture, not the
        # patient's direction: it takes the measured motion.
        if reference is not None and reference.moving and self.settings.mode in ("position", "active_assist"):
            velocity = reference.velocity
        else:
            velocity = state.v
        moving = np.abs(velocity) > MOTION_SPEED
        direction = np.where(moving, np.sign(velocity), 0.0) if np.any(moving) else None
        onset = self.spasm.update(state.t, joint_forces, direction)
        if onset is None:
            return
        joint = self.model.joint_names[onset.joint]
        reaction = self.settings.spasm_reaction
        self.reaction = reaction
        self._hold = np.array(state.q, dtype=float)
        if reaction == "return_to_start":
            self._plan_return(state, reference)
        else:
            self.admittance.reset(state.q)
        self.events.append(ControllerEvent(
            "spasm", f"spasm at {joint}: {onset.force:.1f} N ({onset.rule}); {reaction.replace('_', ' ')}", True,
            {"joint": joint, "force": f"{onset.force:.2f}", "onset": f"{onset.onset:.6f}", "reaction": reaction,
             "rule": onset.rule}, state.t))

    def _plan_return(self, state, reference) -> None:
        if reference is None:
            start = self._mode_start
        else:
            # resistive's start posture is where its reference ends (it runs from a sagged arm to it).
            start = reference.end if self.settings.mode == "resistive" else reference.start
        start = np.clip(np.asarray(start, dtype=float), self.model.lower, self.model.upper)
        q = np.array(state.q, dtype=float)
        duration = max(minimum_jerk_duration(float(np.max(np.abs(start - q))), self.settings.spasm_return_speed),
                       self.dt)
        self._return = QuinticSegment.minimum_jerk(q, start, duration)
        self._return_t0 = state.t

    def _react_wall(self, state, joint: int) -> None:
        total = float(self.walls.effort(state.q, state.v).total[joint])
        name = self.model.joint_names[joint]
        self.reaction = "protective_stop"
        self._hold = np.array(state.q, dtype=float)
        self.events.append(ControllerEvent(
            "soft_wall_limit", f"soft wall of {name} pushed with {total:.1f} N·m (limit "
            f"{self.settings.soft_wall_torque_limit:.1f} N·m); protective stop", True,
            {"joint": name, "torque": f"{total:.2f}", "onset": f"{state.t:.6f}", "reaction": "protective_stop"},
            state.t))

    # -- reporting -----------------------------------------------------------

    def at_rest(self, velocity) -> bool:
        """True when every joint speed [rad/s] is below :data:`REST_SPEED`."""
        return bool(np.all(np.abs(np.asarray(velocity, dtype=float)) < REST_SPEED))

    def values(self) -> dict[str, str]:
        """Diagnostic key/values: mode, reaction, signal problem, mode values."""
        s = self.settings
        return {"mode": s.mode, "reaction": self.reaction or "none", "signal_problem": self.signal_problem or "none",
                "interaction_force_n": f"{np.linalg.norm(self.interaction_force):.2f}",
                "cuff_force_n": f"{np.linalg.norm(self.cuff_force):.2f}",
                "admittance": f"{s.admittance_mass:g} kg, {s.admittance_damping:g} N·s/m",
                "assist_gain": f"{s.assist_gain:.3f}", **self.mode.values()}
