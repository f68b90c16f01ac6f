"""The shape task's measurements: a mesh in the unit frame against the input shape (rbf and bsp share them)."""

import numpy as np

CONVENTION = ("unit frame: input bbox centre at 0, diagonal 1.9; chamfer_l2 = mean Euclidean NN distance over "
              "100k area-weighted surface samples, averaged both ways; normal_consistency = mean |n.n'| of NN pairs, "
              "both ways; iou = Monte-Carlo occupancy IoU over 1M uniform points in [-1,1]^3")


def shape_metrics(v: np.ndarray, f: np.ndarray, shape, iou_points: int = 1_000_000, seed: int = 0,
                  path=None) -> dict:
    """Quality of mesh (v, f) in the unit frame against ``shape`` (a ``scenes.shapes.Shape``): IoU by
    Monte-Carlo occupancy, Chamfer, normal consistency, and the mesh's own topology beside the input's
    (``path``: the file it was written to, whose topology is then what other tools see: ``reloaded``)."""
    from fieldfit.mesh.inside import inside
    from fieldfit.mesh.metrics import surface_agreement

    probe = np.random.default_rng(seed).uniform(-1, 1, (int(iou_points), 3))
    pin, gin = inside(probe, v, f), shape.inside(probe)
    chamfer, normals = surface_agreement((v, f), (shape.vertices, shape.faces))
    return {"chamfer_l2": chamfer, "iou": float((pin & gin).sum() / max((pin | gin).sum(), 1)),
            "normal_consistency": normals, **mesh_figures(v, f, path),
            "input_euler": shape.euler, "input_components": shape.components}


def mesh_figures(v: np.ndarray, f: np.ndarray, path=None) -> dict:
    """What an exported mesh reports without the input: faces, watertight, components, Euler number; with ``path``
    (the file (v, f) was written to) the topology other tools find in it (``reloaded``)."""
    from fieldfit.mesh.metrics import component_count, euler_characteristic, is_watertight

    out = {"faces": int(len(f)), "watertight": bool(is_watertight(v, f)), "components": int(component_count(v, f)),
           "euler": int(euler_characteristic(v, f))}
    if path is not None:
        again = reloaded(path)
        out.update(again, watertight=bool(out["watertight"] and again["watertight"]))
    return out


def reloaded(path) -> dict:
    """Watertight, components and Euler number of the mesh file ``path`` as other tools load it: trimesh's default
    load and a merge by distance at ``mesh.weld.WELD_TOL`` (``mesh.weld.reload_report``, kept under 'reload').
    Watertight: both closed 2-manifolds with positive volume that agree; components and Euler of the merge."""
    from fieldfit.mesh.weld import reload_report

    rep = reload_report(path)
    t, m = rep["trimesh"], rep["merged"]
    agree = (t["euler"], t["shells"]) == (m["euler"], m["shells"])
    return {"watertight": bool(t["ok"] and m["ok"] and agree), "components": m["shells"], "euler": m["euler"],
            "reload": rep}


CLAY = (199, 189, 173)  # uint8 colour of shape points without labels (the viewer's clay surface)


def surface_cloud(v: np.ndarray, f: np.ndarray, n: int, labels=None, seed: int = 0):
    """``n`` area-weighted samples of the mesh (v, f) with their face normals (``mesh.points.PointCloud``): coloured
    clay, or with ``labels`` [F] (bsp: the convex of each face) the colour of each face's label (as convexes.ply)."""
    from fieldfit.mesh.convex import palette
    from fieldfit.mesh.points import PointCloud
    from fieldfit.mesh.sampling import surface_samples
    from fieldfit.mesh.topology import face_areas

    rng = np.random.default_rng(seed)
    if labels is None:
        p, normals = surface_samples(v, f, n, rng)
        return PointCloud(p, np.tile(np.asarray(CLAY, np.uint8), (n, 1)), normals)
    labels = np.asarray(labels, np.int64)
    area = np.bincount(labels, weights=face_areas(v, f), minlength=int(labels.max()) + 1)
    counts = rng.multinomial(n, area / area.sum())
    colours = palette(len(area))
    clouds = []
    for k in np.nonzero(counts)[0]:
        p, normals = surface_samples(v, f[labels == k], int(counts[k]), rng)
        clouds.append(PointCloud(p, np.tile(colours[k], (len(p), 1)), normals))
    return PointCloud.concat(clouds)


def load_source_shape(config: dict):
    """The input shape a run was fitted to (its ``input`` argument, or the built-in), with the run's frame."""
    from fieldfit.errors import InputError
    from fieldfit.scenes.inputs import classify
    from fieldfit.scenes.shapes import load_shape

    src = config.get("input") or config.get("source")
    try:
        inp = classify(src)
    except InputError as e:
        raise InputError(src, f"the shape this run was fitted to is not there any more ({e.problem})",
                         "restore it to measure the run again; fieldfit export RUN needs only the run") from None
    shape = load_shape(inp.path, inp.builtin)
    shape.center, shape.scale = np.asarray(config["center"], np.float64), float(config["scale"])
    return shape


__all__ = ["CLAY", "CONVENTION", "load_source_shape", "mesh_figures", "reloaded", "shape_metrics", "surface_cloud"]
