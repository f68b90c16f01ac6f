"""Comparing two sets of camera poses that differ by a similarity (structure-from-motion fixes no scale, origin or
orientation): fit the similarity on the camera centres, then measure what remains.

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


__all__ = ["compare_poses", "rotation_angle_deg", "umeyama"]
