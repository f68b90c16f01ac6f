"""Shapes for the signed-distance task: a mesh file or a built-in analytic shape.

Everything is handed to fields in a unit frame: bounding-box centre at 0, diagonal 1.9
(METHODS.md 1.4), so the shape sits inside [-1,1]^3. ``from_unit`` maps results back to the
input's own frame and scale.
"""

from dataclasses import dataclass, field
from typing import Callable

import numpy as np


@dataclass
class Shape:
    name: str
    center: np.ndarray  # [3], input frame
    scale: float  # unit = (input - center) * scale
    vertices: np.ndarray  # [V,3] unit frame (reference surface)
    faces: np.ndarray  # [F,3]
    diagnostics: list = field(default_factory=list)
    components: int = 1
    euler: int | None = None
    watertight: bool = True
    analytic_sdf: Callable | None = None  # exact field in the unit frame, when known

    def to_unit(self, v):
        return (np.asarray(v) - self.center) * self.scale

    def from_unit(self, v):
        return np.asarray(v) / self.scale + self.center

    def training_set(self, n: int, rng: np.random.Generator, **sampling):
        """(points float32 [n,3], sdf float32 [n]) in the unit frame, negative inside.

        ``sampling``: options of ``mesh.sampling.sdf_training_set`` (meshes only; e.g. thin_frac)."""
        from fieldfit.mesh.sampling import sdf_training_set, surface_samples

        if self.analytic_sdf is None:
            return sdf_training_set(self.vertices, self.faces, n, rng, **sampling)
        n_surf = n // 2
        surf, _ = surface_samples(self.vertices, self.faces, n_surf, rng)
        sig = np.where(rng.random(n_surf) < 0.5, 0.01, 0.05)[:, None]
        near = surf + rng.normal(size=surf.shape) * sig
        uni = rng.uniform(-1, 1, size=(n - n_surf, 3))
        pts = np.concatenate([near, uni]).astype(np.float32)
        return pts, self.analytic_sdf(pts).astype(np.float32)

    def inside(self, pts: np.ndarray) -> np.ndarray:
        """Occupancy of the reference in the unit frame (exact for analytic shapes)."""
        if self.analytic_sdf is not None:
            return self.analytic_sdf(pts) < 0
        from fieldfit.mesh.inside import inside

        return inside(pts, self.vertices, self.faces)


def load_shape(path=None, builtin: str | None = None) -> Shape:
    """A Shape from a mesh file (any of mesh.io's formats, broken ones included) or a built-in."""
    if builtin is not None:
        from .builtin import SDF_FUNCTIONS, csg_reference_mesh

        v, f = csg_reference_mesh()
        return Shape(builtin, np.zeros(3), 1.0, v, f, ["built-in analytic shape: exact occupancy"], 1, -2, True,
                     analytic_sdf=SDF_FUNCTIONS[builtin])
    from fieldfit.mesh.io import load_mesh, normalization

    m = load_mesh(path)
    center, scale = normalization(m.vertices)
    return Shape(m.path, center, scale, (m.vertices - center) * scale, m.faces, list(m.diagnostics),
                 m.components, m.euler, m.watertight)
