"""Comparing two sets of camera poses that differ by a similarity (structure-from-motion fixes no scale, origin or
orientation): fit the similarity on the camera centres, then measure what remains; and the similarity that puts
posed cameras in the frame ``fieldfit poses`` writes (``canonical_frame``).

Conventions: poses are camera-to-world [3,4] or [4,4] matrices, both sets in the same camera convention (OpenGL or
OpenCV: the rotation error is the same). ``umeyama(src, dst)`` returns (s, R, t) minimising
sum |s R src_i + t - dst_i|^2 (Umeyama 1991, reflections excluded).
"""

import numpy as np


def umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """The similarity (scale s, rotation R [3,3], translation t [3]) taking points src [N,3] closest to dst [N,3]
    in least squares. Needs N >= 3 points not all on one line."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 3 or len(src) < 3:
        raise ValueError(f"umeyama: src and dst must both be [N,3] with N >= 3, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    a, b = src - mu_s, dst - mu_d
    var_s = float((a ** 2).sum(axis=1).mean())
    if var_s <= 0:
        raise ValueError("umeyama: the source points coincide")
    u, sig, vt = np.linalg.svd(b.T @ a / len(src))
    d = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[2] = -1.0
    r = u @ np.diag(d) @ vt
    s = float((sig * d).sum() / var_s)
    return s, r, mu_d - s * r @ mu_s


def rotation_angle_deg(r_a: np.ndarray, r_b: np.ndarray) -> float:
    """The angle (degrees) of the rotation taking r_a [3,3] to r_b [3,3]."""
    c = (np.trace(np.asarray(r_a).T @ np.asarray(r_b)) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


def compare_poses(est: dict, ref: dict) -> dict:
    """Align the estimated camera centres to the reference ones (a similarity over the names both hold) and
    report, per name, the rotation error (degrees) and the position error in units of the reference's scale
    (the mean distance of its cameras to their centroid).

    est, ref: name -> camera-to-world [3,4] / [4,4]. Returns {"names", "rotation_deg" [N], "position" [N],
    "scale" (the reference's scale, world units), "similarity": (s, R, t) mapping est into ref}.
    """
    names = sorted(set(est) & set(ref))
    if len(names) < 3:
        raise ValueError(f"compare_poses: {len(names)} cameras in common, need at least 3")
    e = np.stack([np.asarray(est[n], np.float64)[:3] for n in names])
    g = np.stack([np.asarray(ref[n], np.float64)[:3] for n in names])
    s, r, t = umeyama(e[:, :, 3], g[:, :, 3])
    centres = (s * (r @ e[:, :, 3].T)).T + t
    scale = float(np.linalg.norm(g[:, :, 3] - g[:, :, 3].mean(axis=0), axis=1).mean())
    pos = np.linalg.norm(centres - g[:, :, 3], axis=1) / max(scale, 1e-12)
    rot = np.array([rotation_angle_deg(r @ e[i, :, :3], g[i, :, :3]) for i in range(len(names))])
    return {"names": names, "rotation_deg": rot, "position": pos, "scale": scale, "similarity": (s, r, t)}


CAMERA_DISTANCE = 4.0  # the cameras' median distance from what they look at, in the canonical frame
FLAT = 0.01  # right vectors this close to one line (second eigenvalue / largest) leave up to the mean up


def up_direction(poses: np.ndarray) -> np.ndarray:
    """[3] unit "up" of OpenGL camera-to-world poses [N,3,4]: the direction the cameras' x (right) axes are most
    nearly perpendicular to (people hold cameras level, however they tilt them), signed toward the cameras' mean
    up (+y). Where the right axes all lie along one line (every camera facing one way), that leaves a plane: then
    the mean up projected into it."""
    from fieldfit.render.camera import mean_up

    poses = np.asarray(poses, np.float64)
    right, usual = poses[:, :, 0], mean_up(list(poses))
    w, v = np.linalg.eigh(right.T @ right)  # ascending
    if w[1] < FLAT * w[2]:
        up = usual - v[:, 2] * (v[:, 2] @ usual)
    else:
        up = v[:, 0] if v[:, 0] @ usual >= 0 else -v[:, 0]
    n = np.linalg.norm(up)
    return up / n if n > 1e-9 else np.array([0.0, 0.0, 1.0])


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[3,3] the smallest rotation taking unit vector a to unit vector b (a half turn about an axis
    perpendicular to a when they are opposite)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    c, axis = float(a @ b), np.cross(a, b)
    if c < -1.0 + 1e-12:
        helper = np.array([1.0, 0.0, 0.0]) if abs(a[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
        k = np.cross(a, helper)
        k /= np.linalg.norm(k)
        return 2.0 * np.outer(k, k) - np.eye(3)
    k = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    return np.eye(3) + k + k @ k / (1.0 + c)


def canonical_frame(poses: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """The similarity (s, R, t), x -> s R x + t, that puts OpenGL camera-to-world poses [N,3,4] (N >= 2) in the
    frame ``fieldfit poses`` writes: ``up_direction`` along +z (the smallest rotation: the heading is kept), the
    point the cameras look at (``render.camera.look_at_centre``) at the origin, and the cameras' median distance
    from it ``CAMERA_DISTANCE`` (as Blender's synthetic scenes and instant-ngp's COLMAP conversion): meshes stand
    upright, units are sane. The heading about z is left as it came; the fields' grids and contraction are
    axis-aligned, so it moves a fit's PSNR (the fox turned 49 degrees: 0.8 dB, bench/README.md), and no rule for
    choosing it was found."""
    from fieldfit.render.camera import look_at_centre

    poses = np.asarray(poses, np.float64)[:, :3]
    r = rotation_between(up_direction(poses), np.array([0.0, 0.0, 1.0]))
    centre = look_at_centre(list(poses))
    dist = float(np.median(np.linalg.norm(poses[:, :, 3] - centre, axis=1)))
    s = CAMERA_DISTANCE / dist if dist > 1e-12 else 1.0
    return s, r, -s * r @ centre


def transform_poses(poses: np.ndarray, s: float, r: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Camera-to-world poses [N,3,4] or [N,4,4] moved by the similarity x -> s R x + t (rotations turned,
    centres moved; the cameras' own axes stay unit length)."""
    out = np.array(poses, np.float64)
    out[:, :3, :3] = r @ out[:, :3, :3]
    out[:, :3, 3] = s * out[:, :3, 3] @ r.T + t
    return out


__all__ = ["CAMERA_DISTANCE", "canonical_frame", "compare_poses", "rotation_angle_deg", "rotation_between",
           "transform_poses", "umeyama", "up_direction"]
