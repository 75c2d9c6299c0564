"""SimulatedArm: the ``sim`` hardware backend, and the test double of the project.

The arm is simulated with pinocchio's articulated-body algorithm (ABA) and
semi-implicit Euler at a fixed step ``1 / rate_hz``. The simulated model is the
robot of the URDF plus the patient's limb:

* the upper arm (strapped to ``upper_arm_link``) and the forearm with the hand
  (carried by the cuff) as extra rigid bodies, so they load every joint;
* a mild visco-elastic resistance of the limb's joints (spastic-like), in joint space;
* the reflected rotor inertia of the geared actuators (armature), joint viscous
  and dry friction from the URDF, and stiff end stops just beyond the URDF limits;
* optionally a virtual patient (:mod:`rehab_robot.hardware.virtual_patient`) whose
  muscles add joint torques: reaching for the target given by
  :meth:`SimulatedArm.set_patient_target`, spasticity, tremor, fatigue, scripted
  events. By default the patient is passive and the simulation is unchanged.

The simulation is a pure function of the clock readings and the calls made: with
an injected fake clock it is fully deterministic. ``read()`` steps the physics up
to ``clock()``; ``advance_to(t)`` steps it to any time ``t``.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Mapping

import numpy as np
import pinocchio as pin

from rehab_robot import JOINT_NAMES
from rehab_robot.errors import ConfigError, HardwareError
from rehab_robot.hardware.interface import HardwareInterface, JointCommand, JointSample
from rehab_robot.hardware.virtual_patient import VirtualPatient, check_target, load_virtual_patient
from rehab_robot.model import ArmModel

#: Comfortable start pose [rad]: arm by the side, slightly abducted, elbow slightly bent.
DEFAULT_INITIAL_POSITION = (0.0, 0.1, 0.0, 0.3)

#: Drive position gains [N·m/rad] and velocity gains [N·m·s/rad]. With the reflected
#: rotor inertia below they give ~30-60 rad/s closed-loop bandwidth, well damped,
#: and stay far inside the stability bound of explicit integration at 1 kHz.
DEFAULT_STIFFNESS = (1000.0, 1000.0, 300.0, 400.0)
DEFAULT_DAMPING = (40.0, 40.0, 8.0, 12.0)

#: The patient's limb. Segment masses follow Winter's anthropometric tables for a
#: ~75 kg adult (upper arm 2.8 %, forearm + hand 2.2 % of body mass).
DEFAULT_HUMAN_LOAD = {
    "upper_arm_mass": 2.0,  # [kg]
    "upper_arm_com": 0.13,  # [m] from the shoulder centre along the upper arm
    "forearm_mass": 1.5,  # [kg] forearm and hand
    "forearm_com": 0.12,  # [m] from the cuff centre toward the elbow
    "stiffness": 2.0,  # [N·m/rad] passive joint resistance, scalar or per joint
    "damping": 1.0,  # [N·m·s/rad]
    "rest_position": DEFAULT_INITIAL_POSITION,  # [rad] relaxed posture of the limb
}

#: Reflected rotor inertia of each geared actuator [kg·m²] (rotor ~5-10 kg·mm²
#: through a 1:100 harmonic drive). Not in the URDF, which has no tag for it.
ARMATURE = (0.10, 0.10, 0.05, 0.05)

#: Natural frequency of the emulated holding drive [rad/s]: a hold stiffness
#: M wn² of ~500-3000 N·m/rad (a 5 N·m bump moves the arm < 0.01 rad), critically
#: damped, and wn dt = 0.06 keeps the explicit integration well behaved.
HOLD_NATURAL_FREQUENCY = 60.0
#: End stops: a stiff rubber buffer just beyond each URDF limit. Full actuator
#: torque (80 N·m) presses 8 mrad into it; the explicit integration stays stable
#: because k dt² and d dt are small against the smallest joint inertia (armature).
END_STOP_STIFFNESS = 10000.0  # [N·m/rad]
END_STOP_DAMPING = 30.0  # [N·m·s/rad]
#: Speed [rad/s] over which dry friction ramps up (tanh): a sharper ramp acts like
#: a huge damping near v = 0 and would make the explicit integration chatter.
FRICTION_SMOOTHING = 0.05
#: Longest stretch [s] of simulated time one ``read()`` catches up. If the process
#: was suspended for longer, replaying it would block the driver's control loop
#: (and replay stale commands); the rest of the gap is skipped, the arm frozen.
MAX_CATCH_UP = 1.0

_MIN_RATE_HZ = 1000.0
#: Damping of the patient-torque-to-cuff-wrench solve: a bias of about
#: (damping / smallest singular value of the cuff Jacobian)² ~ 1e-4, bounded at singularities.
_WRENCH_DAMPING = 1e-3
# Upper-arm and forearm radii [m] and lengths [m], for the limb segment inertias.
_UPPER_ARM_SIZE = (0.045, 0.28)
_FOREARM_SIZE = (0.04, 0.25)


class SimulatedArm(HardwareInterface):
    """Simulated arm with a patient's limb, a drive per joint and an F/T sensor.

    Args:
        robot_description: URDF file [path]; ``None`` or ``""`` uses the shipped arm.
        rate_hz: Physics rate [Hz], at least 1000.
        clock: Callable returning the current time [s]; the simulation follows it.
        initial_position: Start position [rad], inside the URDF limits.
        human_load: Overrides of :data:`DEFAULT_HUMAN_LOAD` (mapping).
        stiffness: Drive position gain [N·m/rad], scalar or per joint.
        damping: Drive velocity gain [N·m·s/rad], scalar or per joint.
        quick_stop_time: Time constant [s] of the velocity decay on ``disable()``.
        rest_velocity: Speed [rad/s] below which a joint counts as at rest.
        virtual_patient: Settings of the patient's muscles (docs/virtual-patient.md):
            a mapping, or the path of a YAML file holding one; ``None``: passive.

    Attributes:
        joint_names: Joint names, in the order of every array.
        robot: The robot-only :class:`ArmModel` (no limb), e.g. for feed-forward.
        rate_hz: Physics rate [Hz]; ``dt`` is its step [s].

    Raises:
        ConfigError: if an option has a bad value; the message names it.
    """

    def __init__(
        self,
        robot_description: str | None = None,
        rate_hz: float = 1000.0,
        clock: Callable[[], float] = time.monotonic,
        initial_position=None,
        human_load: Mapping | None = None,
        stiffness=None,
        damping=None,
        quick_stop_time: float = 0.006,
        rest_velocity: float = 0.01,
        virtual_patient: Mapping | str | None = None,
    ):
        self.rate_hz = _number("rate_hz", rate_hz, _MIN_RATE_HZ, math.inf, "at least 1000 Hz")
        self.dt = 1.0 / self.rate_hz
        if not callable(clock):
            raise ConfigError("hardware option 'clock' must be a callable returning seconds")
        self.quick_stop_time = _number(
            "quick_stop_time", quick_stop_time, 2.0 * self.dt, 0.1,
            f"between 2 physics steps ({2.0 * self.dt:g} s) and 0.1 s",
        )
        self.rest_velocity = _number(
            "rest_velocity", rest_velocity, 1e-6, 0.5, "between 1e-6 and 0.5 rad/s"
        )
        if robot_description is not None and not isinstance(robot_description, (str, os.PathLike)):
            raise ConfigError(
                f"hardware option 'robot_description' = {robot_description!r}: must be a URDF path"
            )
        try:
            # "" is how ROS parameters say "not set".
            self.robot = ArmModel.from_urdf(robot_description or None)
        except ConfigError as exc:
            raise ConfigError(f"hardware option 'robot_description': {exc}") from exc
        if self.robot.joint_names != JOINT_NAMES:
            raise ConfigError(
                f"hardware option 'robot_description': {self.robot.path} has joints "
                f"{list(self.robot.joint_names)}; expected {list(JOINT_NAMES)}"
            )
        self.joint_names = self.robot.joint_names
        n = self.robot.nq
        lower, upper = self.robot.lower, self.robot.upper

        q0 = _per_joint(
            "initial_position", DEFAULT_INITIAL_POSITION if initial_position is None
            else initial_position, n, -math.inf, "finite joint angles [rad]",
        )
        if np.any(q0 < lower) or np.any(q0 > upper):
            raise ConfigError(
                f"hardware option 'initial_position' {q0.tolist()} is outside the joint "
                f"limits: allowed {self.robot.limits_by_joint()} [rad]"
            )
        armature = np.array(ARMATURE)
        self._kp = _per_joint(
            "stiffness", DEFAULT_STIFFNESS if stiffness is None else stiffness, n, 0.0,
            "values >= 0 [N·m/rad]",
        )
        self._kd = _per_joint(
            "damping", DEFAULT_DAMPING if damping is None else damping, n, 0.0,
            "values >= 0 [N·m·s/rad]",
        )
        # Explicit integration of a spring-damper on inertia m is stable only for
        # k dt² < 4 m and d dt < 2 m. We allow a quarter and a half of that, with
        # the armature as m: it bounds every joint's inertia from below.
        kp_max, kd_max = armature * self.rate_hz**2, armature * self.rate_hz
        if np.any(self._kp > kp_max):
            raise ConfigError(
                f"hardware option 'stiffness' {self._kp.tolist()} is too stiff for "
                f"rate_hz={self.rate_hz:g}: allowed at most {kp_max.tolist()} [N·m/rad]"
            )
        if np.any(self._kd > kd_max):
            raise ConfigError(
                f"hardware option 'damping' {self._kd.tolist()} is too high for "
                f"rate_hz={self.rate_hz:g}: allowed at most {kd_max.tolist()} [N·m·s/rad]"
            )
        load = _human_load(human_load, n)
        if np.any(load["damping"] + self._kd > kd_max):
            raise ConfigError(
                "hardware option 'human_load' damping plus drive damping must be at most "
                f"{kd_max.tolist()} [N·m·s/rad] at rate_hz={self.rate_hz:g}"
            )

        patient = load_virtual_patient(virtual_patient)
        if np.any(load["damping"] + self._kd + patient.max_damping > kd_max):
            raise ConfigError(
                "hardware option 'virtual_patient': its damping (times effort) plus its "
                "spasticity reflex gain, the limb's and the drive's damping must be at most "
                f"{kd_max.tolist()} [N·m·s/rad] at rate_hz={self.rate_hz:g}"
            )

        self._model = self._build_sim_model(load, armature)
        self._data = self._model.createData()
        self._wrench_data = self._model.createData()
        self._lower, self._upper = lower.copy(), upper.copy()
        self._mid_range, self._half_range = 0.5 * (upper + lower), 0.5 * (upper - lower)
        self._effort_limit = self.robot.effort_limit.copy()
        self._neg_effort_limit = -self._effort_limit
        self._human_k = load["stiffness"]
        self._rest = load["rest_position"]
        self._viscous = load["damping"] + np.array(self.robot.pin_model.damping)
        self._dry = np.array(self.robot.pin_model.friction)
        self._clock = clock

        # State. q/v and the previous step's q/v live in swapped double buffers,
        # so the previous state (for the F/T wrench) costs no copy.
        self._q, self._q_prev = q0.copy(), q0.copy()
        self._v, self._v_prev = np.zeros(n), np.zeros(n)
        self._tau = np.zeros(n)  # motor torque of the last step [N·m]
        self._ext = np.zeros(n)  # scratch: limb elastic torque, then net joint torque
        self._tmp = np.zeros(n)  # scratch
        self._acc = np.zeros(n)  # scratch: acceleration the stop/hold asks for
        self._hold = q0.copy()
        self._cmd_q, self._cmd_v, self._cmd_tau = np.zeros(n), np.zeros(n), np.zeros(n)
        self._enabled = False
        self._tracking = False  # enabled and a command written since enable()
        self._stopping = True  # quick stop until at rest; then hold at self._hold
        self._closed = False
        self._lock = threading.Lock()
        self._t_origin = float(clock())
        self._steps = 0
        # A passive patient adds exactly nothing: it is left out of the hot path, so
        # the simulation is bit for bit what it is without one.
        self._patient = None if patient.passive else VirtualPatient(
            patient, lower, upper, self.dt, self._t_origin)
        self._patient_tau = np.zeros(n)  # patient joint torque of the last step [N·m]
        self._ft_frame = self.robot.frame_id("ft_sensor_link")

    # -- HardwareInterface -----------------------------------------------------

    #: read() is CPU work that catches the physics up to the clock (about 0.1 ms a cycle);
    #: a budget this wide catches a stuck simulation without faulting on a busy machine.
    cycle_budget = 0.01

    @classmethod
    def check_options(cls, **options) -> None:
        """Validate the options by building the simulation (it opens no device)."""
        SimulatedArm(**options).close()

    def read(self) -> JointSample:
        """Step the physics up to ``clock()`` and return the measurement."""
        with self._lock:
            now = float(self._clock())
            behind = now - self.time
            if behind > MAX_CATCH_UP:
                self._t_origin += behind - MAX_CATCH_UP
            self._advance_to(now)
            return self._sample()

    def write(self, command: JointCommand) -> None:
        """Set the drive setpoint (position [rad], velocity [rad/s], effort [N·m]).

        Ignored while disabled. Positions are clamped to the URDF joint limits.

        Raises:
            ValueError: if a field has the wrong length or holds NaN/inf.
        """
        fields = command.checked_fields(self.joint_names)
        with self._lock:
            if not self._enabled:
                return
            # Like a real drive's software position limits: never servo past the URDF limits.
            np.clip(fields[0], self._lower, self._upper, out=self._cmd_q)
            np.copyto(self._cmd_v, fields[1])
            np.copyto(self._cmd_tau, fields[2])
            self._tracking = True
            self._stopping = False

    def set_patient_target(self, position, stamp: float) -> None:
        """Show the virtual patient the exercise's current target.

        Args:
            position: Joint positions [rad] the patient should reach for.
            stamp: Time [s] on this backend's clock (``JointSample.stamp``) at which
                the target appeared; the patient sees it ``reaction_delay`` later.

        Raises:
            ValueError: for a wrong size, NaN/inf, or a stamp older than the last one.
        """
        with self._lock:
            if self._patient is not None:
                self._patient.set_target(position, stamp)
            else:
                # Same checks without a patient, so a caller's bug shows in any setup.
                check_target(position, stamp)

    @property
    def virtual_patient(self) -> VirtualPatient | None:
        """The active virtual patient, or ``None`` when it is passive (read only)."""
        return self._patient

    @property
    def patient_torque(self) -> np.ndarray:
        """Joint torques [N·m] the patient's muscles applied in the last step."""
        return self._patient_tau.copy()

    def diagnostics(self) -> dict[str, str]:
        """The virtual patient's state when one is active (none otherwise)."""
        patient = self._patient
        if patient is None:
            return {}
        return {
            "virtual_patient_reaches": str(patient.reaches),
            "virtual_patient_strength_left": f"{100.0 * patient.fatigue_factor:.0f} %",
            "virtual_patient_work": f"{patient.work:.1f} J",
            "virtual_patient_effort": f"{patient.effort:.2f}",
        }

    def enable(self) -> None:
        """Let subsequent ``write()`` setpoints move the arm.

        Raises:
            HardwareError: if the backend was closed.
        """
        with self._lock:
            if self._closed:
                raise HardwareError("simulated arm is closed; create a new one")
            self._enabled = True

    def disable(self) -> None:
        """Quick-stop to rest, then hold position against gravity. Idempotent."""
        with self._lock:
            self._enabled = False
            if self._tracking:
                self._tracking = False
                self._stopping = True

    @property
    def enabled(self) -> bool:
        """True while ``write()`` setpoints take effect."""
        return self._enabled

    def close(self) -> None:
        """Disable the drives; ``enable()`` is refused afterwards. Idempotent."""
        self.disable()
        self._closed = True

    # -- simulation ------------------------------------------------------------

    @property
    def time(self) -> float:
        """Simulated time [s], on the same clock as ``clock()``."""
        return self._t_origin + self._steps * self.dt

    @property
    def drive_state(self) -> str:
        """``"tracking"``, ``"stopping"`` (quick stop) or ``"holding"``."""
        if self._tracking:
            return "tracking"
        return "stopping" if self._stopping else "holding"

    @property
    def sim_model(self) -> pin.Model:
        """The simulated pinocchio model: robot, limb and armature (read only)."""
        return self._model

    def advance_to(self, t: float) -> None:
        """Step the physics up to time ``t`` [s] (no catch-up limit); past ``t`` is a no-op."""
        with self._lock:
            self._advance_to(float(t))

    def _advance_to(self, t: float) -> None:
        # The small epsilon keeps t = k * dt from landing one step short by rounding.
        target = math.floor((t - self._t_origin) * self.rate_hz + 1e-6)
        step = self._step
        for _ in range(target - self._steps):
            step()

    def _step(self) -> None:
        """One physics step; the hot path, so it works in preallocated buffers."""
        q, v, tau, tmp = self._q, self._v, self._tau, self._tmp
        patient = self._patient
        if patient is not None:
            np.copyto(self._patient_tau, patient.torque(self.time, q, v))
        # Passive elastic torque of the limb, +K (q - rest): the hold compensates it.
        elastic = self._ext
        np.subtract(q, self._rest, out=elastic)
        elastic *= self._human_k
        if self._tracking:
            np.subtract(self._cmd_q, q, out=tau)
            tau *= self._kp
            np.subtract(self._cmd_v, v, out=tmp)
            tmp *= self._kd
            tau += tmp
            tau += self._cmd_tau
        else:
            # Emulates a drive with a holding brake: a real drive rejects static
            # loads (gravity of robot and limb, the limb's elastic pull) through the
            # integral action of its velocity loop and then its brake, so nothing
            # sags. We get the same by compensating those loads exactly, from the
            # simulated model. rnea gives M(q) a + C(q, v) v + g(q), armature included.
            acc = self._acc
            if self._stopping:
                np.abs(v, out=tmp)
                # Python's max over a 4-element list beats ndarray.max() (call overhead).
                if max(tmp.tolist()) < self.rest_velocity:
                    np.copyto(self._hold, q)
                    self._stopping = False
            if self._stopping:
                np.multiply(v, -1.0 / self.quick_stop_time, out=acc)
            else:
                wn = HOLD_NATURAL_FREQUENCY
                np.subtract(self._hold, q, out=acc)
                acc *= wn * wn
                np.multiply(v, 2.0 * wn, out=tmp)
                acc -= tmp
            np.copyto(tau, pin.rnea(self._model, self._data, q, v, acc))
            tau += elastic
            if patient is not None:
                # The brake holds against the patient's muscles too.
                tau -= self._patient_tau
        np.minimum(tau, self._effort_limit, out=tau)
        np.maximum(tau, self._neg_effort_limit, out=tau)

        # Torque on the joints: motor - limb (elastic + viscous) - friction - end stops.
        ext = elastic  # reuse the buffer: ext = tau - elastic - viscous v - dry
        np.subtract(tau, elastic, out=ext)
        np.multiply(v, self._viscous, out=tmp)
        ext -= tmp
        np.multiply(v, 1.0 / FRICTION_SMOOTHING, out=tmp)
        np.tanh(tmp, out=tmp)
        tmp *= self._dry
        ext -= tmp
        np.subtract(q, self._mid_range, out=tmp)
        np.abs(tmp, out=tmp)
        tmp -= self._half_range
        if max(tmp.tolist()) > 0.0:  # some joint is beyond a limit: rare, so not lean
            ext += _end_stop_torque(q, v, self._lower, self._upper)
        if patient is not None:
            ext += self._patient_tau

        a = pin.aba(self._model, self._data, q, v, ext)
        # Semi-implicit Euler into the spare buffers, then swap.
        v_new, q_new = self._v_prev, self._q_prev
        np.multiply(a, self.dt, out=v_new)
        v_new += v
        np.multiply(v_new, self.dt, out=q_new)
        q_new += q
        self._q, self._q_prev = q_new, q
        self._v, self._v_prev = v_new, v
        self._steps += 1

    def _sample(self) -> JointSample:
        v = self._v
        return JointSample(
            stamp=self.time,
            position=self._q.copy(),
            velocity=v.copy(),
            effort=self._tau.copy(),
            wrench=self._cuff_wrench(),
            at_rest=max(np.abs(v).tolist()) < self.rest_velocity,
        )

    def _cuff_wrench(self) -> np.ndarray:
        """Wrench the forearm load applies to the cuff in ``ft_sensor_link`` [N, N·m].

        Newton-Euler on the load, at the state and acceleration of the last step:
        the cuff must supply I a_g + v x* I v (a_g: acceleration relative to
        gravity) minus the limb's elbow couple; the load pushes back the opposite.
        The cuff's own mass is tared out, as a real sensor's bias removal does.

        The patient's muscle torques tau_p reach the robot through the cuff (the
        upper-arm strap only aligns the arm): the wrench W they add is the smallest
        one with J^T W = tau_p, J the ``ft_sensor_link`` Jacobian in its own frame.
        """
        q, v = self._q_prev, self._v_prev
        a = (self._v - v) * self.rate_hz  # the acceleration ABA gave in that step
        data, j = self._wrench_data, self._elbow_joint
        pin.forwardKinematics(self._model, data, q, v, a)
        vj = data.v[j]
        a_g = data.a[j] - data.oMi[j].actInv(self._model.gravity)
        inertia = self._forearm_inertia
        supplied = inertia * a_g + vj.cross(inertia * vj)
        k = self._elbow_index
        elbow_couple = (-self._human_k[k] * (q[k] - self._rest[k])
                        - self._viscous_human_elbow * v[k])
        on_cuff = pin.Force(-supplied.linear, -supplied.angular + elbow_couple * self._elbow_axis)
        wrench = self._joint_to_ft.actInv(on_cuff).vector.copy()
        if self._patient is not None:
            jac = pin.computeFrameJacobian(self._model, data, q, self._ft_frame, pin.ReferenceFrame.LOCAL)
            # Minimum-norm solution J (J^T J)^-1 tau_p as a 4x4 solve (far cheaper than a
            # general least squares), slightly damped so that it stays bounded where two
            # joint axes line up (gimbal lock of the shoulder) and J loses rank.
            gram = jac.T @ jac
            gram[np.diag_indices_from(gram)] += _WRENCH_DAMPING**2
            wrench += jac @ np.linalg.solve(gram, self._patient_tau)
        return wrench

    def _build_sim_model(self, load: dict, armature: np.ndarray) -> pin.Model:
        """Return a copy of the robot model with the limb and the armature added.

        Also records where the forearm load and the F/T sensor sit, for the wrench.
        """
        robot = self.robot.pin_model
        model = pin.Model(robot)
        model.armature[:] = armature

        upper_frame = robot.frames[self.robot.frame_id("upper_arm_link")]
        cuff = robot.frames[self.robot.frame_id("cuff_link")]
        # Direction from the shoulder toward the elbow, in the upper-arm frame.
        elbow_in_upper_joint = robot.jointPlacements[cuff.parentJoint].translation
        to_elbow = upper_frame.placement.actInv(elbow_in_upper_joint)
        to_elbow /= np.linalg.norm(to_elbow)
        radius, length = _UPPER_ARM_SIZE
        upper_arm = _cylinder(load["upper_arm_mass"], radius, length, to_elbow,
                              load["upper_arm_com"] * to_elbow)
        model.appendBodyToJoint(upper_frame.parentJoint, upper_arm, upper_frame.placement)

        ft = robot.frames[self.robot.frame_id("ft_sensor_link")]
        if cuff.parentJoint != ft.parentJoint:
            raise ConfigError(
                "hardware option 'robot_description': cuff_link and ft_sensor_link must "
                "be rigidly attached to the same link"
            )
        j = cuff.parentJoint
        # Direction from the cuff toward the elbow, in the cuff frame.
        to_elbow = cuff.placement.rotation.T @ -cuff.placement.translation
        to_elbow /= np.linalg.norm(to_elbow)
        radius, length = _FOREARM_SIZE
        forearm = _cylinder(load["forearm_mass"], radius, length, to_elbow,
                            load["forearm_com"] * to_elbow)
        model.appendBodyToJoint(j, forearm, cuff.placement)

        self._elbow_joint = j
        self._elbow_index = model.joints[j].idx_v
        self._forearm_inertia = cuff.placement.act(forearm)  # in the elbow joint frame
        self._joint_to_ft = ft.placement
        self._viscous_human_elbow = float(load["damping"][self._elbow_index])
        data = model.createData()
        pin.computeJointJacobians(model, data, pin.neutral(model))
        jac = pin.getJointJacobian(model, data, j, pin.ReferenceFrame.LOCAL)
        self._elbow_axis = jac[3:, self._elbow_index].copy()
        return model


# -- helpers -------------------------------------------------------------------


def _end_stop_torque(q, v, lower, upper) -> np.ndarray:
    """Torque [N·m] of the end-stop buffers; they push out, never pull back in."""
    penetration = np.maximum(q - upper, 0.0) + np.minimum(q - lower, 0.0)
    torque = -END_STOP_STIFFNESS * penetration - END_STOP_DAMPING * v * (penetration != 0.0)
    # A buffer can only push: no sticking when the joint moves back out.
    return np.where(penetration > 0, np.minimum(torque, 0.0), np.maximum(torque, 0.0))


def _cylinder(mass: float, radius: float, length: float, axis: np.ndarray,
              com: np.ndarray) -> pin.Inertia:
    """Spatial inertia of a solid cylinder [kg, m] along unit ``axis``, centred at ``com``."""
    axial = 0.5 * mass * radius**2
    transverse = mass * (3.0 * radius**2 + length**2) / 12.0
    outer = np.outer(axis, axis)
    rotational = transverse * (np.eye(3) - outer) + axial * outer
    return pin.Inertia(mass, np.asarray(com, dtype=float), rotational)


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


def _number(option: str, value, low: float, high: float, allowed: str) -> float:
    """Return ``value`` as a float in [low, high], else raise ConfigError."""
    if not _is_number(value) or not math.isfinite(value) or not low <= value <= high:
        raise ConfigError(f"hardware option {option!r} = {value!r}: must be {allowed}")
    return float(value)


def _per_joint(option: str, value, n: int, low: float, allowed: str) -> np.ndarray:
    """Return a scalar or length-n sequence as an array of n finite values >= low."""
    if _is_number(value):
        values = [value] * n
    elif isinstance(value, (list, tuple, np.ndarray)) and len(value) == n and all(
        _is_number(x) for x in value
    ):
        values = list(value)
    else:
        raise ConfigError(
            f"hardware option {option!r} = {value!r}: must be a number or a list of "
            f"{n} numbers ({', '.join(JOINT_NAMES)}), {allowed}"
        )
    arr = np.array(values, dtype=float)
    if not np.all(np.isfinite(arr)) or np.any(arr < low):
        raise ConfigError(f"hardware option {option!r} = {value!r}: must be {allowed}")
    return arr


def _human_load(options: Mapping | None, n: int) -> dict:
    """Merge ``options`` over :data:`DEFAULT_HUMAN_LOAD` and validate every field."""
    if options is None:
        options = {}
    if not isinstance(options, Mapping):
        raise ConfigError(
            f"hardware option 'human_load' = {options!r}: must be a mapping with keys "
            f"{sorted(DEFAULT_HUMAN_LOAD)}"
        )
    unknown = sorted(set(options) - set(DEFAULT_HUMAN_LOAD))
    if unknown:
        raise ConfigError(
            f"hardware option 'human_load' has unknown keys {unknown}; allowed: "
            f"{sorted(DEFAULT_HUMAN_LOAD)}"
        )
    merged = {**DEFAULT_HUMAN_LOAD, **options}
    return {
        "upper_arm_mass": _number("human_load.upper_arm_mass", merged["upper_arm_mass"],
                                  0.0, 10.0, "between 0 and 10 kg"),
        "upper_arm_com": _number("human_load.upper_arm_com", merged["upper_arm_com"],
                                 0.0, 0.4, "between 0 and 0.4 m"),
        "forearm_mass": _number("human_load.forearm_mass", merged["forearm_mass"],
                                0.0, 10.0, "between 0 and 10 kg"),
        "forearm_com": _number("human_load.forearm_com", merged["forearm_com"],
                               0.0, 0.4, "between 0 and 0.4 m"),
        "stiffness": _per_joint("human_load.stiffness", merged["stiffness"], n, 0.0,
                                "values >= 0 [N·m/rad]"),
        "damping": _per_joint("human_load.damping", merged["damping"], n, 0.0,
                              "values >= 0 [N·m·s/rad]"),
        "rest_position": _per_joint("human_load.rest_position", merged["rest_position"], n,
                                    -math.inf, "finite joint angles [rad]"),
    }
