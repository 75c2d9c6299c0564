"""``path_guidance``: a Cartesian channel at the cuff along a path of 2 or more waypoints.

The cuff moves freely along the path and within ``path_guidance.width`` of it; beyond,
a spring and a damper across the path push it back:

    d = p - c(p)                    c(p): the path's point closest to the cuff p
    F = -k (|d| - w) d / |d| - b (I - t t^T) v      when |d| > w, else 0

with ``t`` the tangent of the closest segment, ``k = path_guidance.stiffness`` [N/m],
``b = path_guidance.damping`` [N·s/m]. Beyond the path's ends the closest point is the
end point, so the channel is closed there. The force enters the admittance as ``J^T F``.

Reference: the "virtual channel" of guidance in robot-aided training, e.g. A. Duschau-Wicke,
J. von Zitzewitz, A. Caprez, L. Lünenburger, R. Riener, "Path control: a method for
patient-cooperative robot-aided gait rehabilitation", IEEE TNSRE 18(1), 2010.
"""

from __future__ import annotations

import numpy as np

from rehab_robot.control.modes.base import ControlMode, Effort


def closest_point(path: np.ndarray, p) -> tuple[np.ndarray, np.ndarray]:
    """Return the point of polyline ``path`` ((k, 3) [m]) closest to ``p``, and that segment's unit tangent."""
    p = np.asarray(p, dtype=float)
    best, best_distance, best_tangent = path[0], np.inf, path[1] - path[0]
    for a, b in zip(path[:-1], path[1:]):
        ab = b - a
        s = float(np.clip((p - a) @ ab / (ab @ ab), 0.0, 1.0))
        c = a + s * ab
        distance = float(np.linalg.norm(p - c))
        if distance < best_distance:
            best, best_distance, best_tangent = c, distance, ab
    return best, best_tangent / np.linalg.norm(best_tangent)


class PathGuidanceMode(ControlMode):
    """The channel along ``path_guidance.waypoints`` (see module docstring)."""

    name = "path_guidance"

    def reset(self, state, setpoint, reference) -> None:
        """Nothing to remember but the last deviation (diagnostics)."""
        self.deviation = 0.0

    def effort(self, state, kinematics, velocity, reference) -> Effort:
        """Channel force as joint torque and damping (zero inside the channel)."""
        s = self.settings
        closest, tangent = closest_point(s.waypoints, kinematics.cuff_position)
        d = kinematics.cuff_position - closest
        distance = float(np.linalg.norm(d))
        self.deviation = distance
        if distance <= s.path_width:
            return self.no_effort()
        J = kinematics.cuff_jacobian[:3]
        force = -s.path_stiffness * (distance - s.path_width) * d / distance
        across = np.eye(3) - np.outer(tangent, tangent)
        return Effort(J.T @ force, J.T @ (s.path_damping * across) @ J, at_cuff=True)

    def values(self) -> dict[str, str]:
        """Distance [m] of the cuff from the path."""
        return {"path_deviation_m": f"{self.deviation:.4f}"}
