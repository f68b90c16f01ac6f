"""Structure-from-motion benchmark: ``fieldfit poses`` on the fox photos against instant-ngp's own poses.

Runs ``fieldfit poses ../shared/data/fox_ingp/images --downscale 4 --out SCENE`` (a fresh process, timed), then
aligns its cameras to the ones in fox_ingp/transforms.json (images matched by file name; a similarity fitted on the
camera centres, ``fieldfit.sfm.compare_poses``) and reports: images registered, rotation error (degrees) and
position error in units of the instant-ngp cameras' spread (their mean distance to their centroid), median and max,
the focal length against instant-ngp's, and COLMAP's stage times.

SCENE is kept for a fit comparison, and beside it SCENE_ngp_frame: the same cameras and points moved by that
similarity into instant-ngp's frame (images linked). The fields' grids and contraction are axis-aligned, so a
scene's frame alone moves its PSNR (the fox's instant-ngp poses turned 49 degrees about the vertical: 26.82 dB
against 27.58, bench/README.md): compare poses in one frame. Their images are already 4x smaller (270x480), so fit
them without a further downscale; they then train on the same pixels as ``fieldfit fox_ingp --downscale 4``:

    python bench/poses_bench.py                       # all 67 photos (the lead runs this one alone)
    python bench/poses_bench.py --limit 12 --json /tmp/poses_smoke.json --scene /tmp/fox12   # smoke run
    fieldfit runs/bench-poses/fox_<date>_ngp_frame --method rbf --time-budget 300      # then, against:
    fieldfit ../shared/data/fox_ingp --downscale 4 --time-budget 300

Writes one JSON (machine description, load averages) to bench/results/poses_fox_<date>.json.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from fieldfit.sfm import compare_poses

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, REPO, RESULTS, write

DOWNSCALE = 4


def reference_poses(transforms: Path) -> tuple[dict, float]:
    """name -> OpenGL camera-to-world of the instant-ngp json, and its focal length fl_x (full resolution)."""
    meta = json.loads(transforms.read_text())
    return {Path(f["file_path"]).name: np.array(f["transform_matrix"]) for f in meta["frames"]}, float(meta["fl_x"])


def sfm_poses(scene: Path) -> tuple[dict, float]:
    """name -> camera-to-world of the scene ``fieldfit poses`` wrote, and its (shared) fl_x."""
    meta = json.loads((scene / "transforms.json").read_text())
    fl = meta.get("fl_x", meta["frames"][0].get("fl_x"))
    return {Path(f["file_path"]).name: np.array(f["transform_matrix"]) for f in meta["frames"]}, float(fl)


def photos_subset(images: Path, limit: int | None, tmp: Path) -> Path:
    """``images`` itself, or a folder of links to its first ``limit`` photos (by name)."""
    if not limit:
        return images
    sub = tmp / "images"
    sub.mkdir()
    for p in sorted(images.glob("*.jpg"))[:limit]:
        (sub / p.name).symlink_to(p.resolve())
    return sub


def in_ngp_frame(scene: Path, similarity) -> Path:
    """SCENE_ngp_frame beside ``scene``: its COLMAP model moved by ``similarity`` (s, R, t) into instant-ngp's
    frame, written as fieldfit poses writes a scene (transforms.json, points3D.ply), its images linked."""
    import pycolmap

    from fieldfit.sfm import export

    s, r, t = similarity
    out = scene.parent / f"{scene.name}_ngp_frame"
    out.mkdir()
    rec = pycolmap.Reconstruction(scene / "sparse" / "0")
    rec.transform(pycolmap.Sim3d(s, pycolmap.Rotation3d(r), t))
    export.write_scene(rec, out)
    (out / "images").symlink_to((scene / "images").resolve())
    return out


def summary(values: np.ndarray) -> dict:
    return {"median": float(np.median(values)), "max": float(values.max()), "mean": float(values.mean())}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(DATA / "fox_ingp"), help="the fox folder (images/, transforms.json)")
    p.add_argument("--limit", type=int, help="only the first N photos (a smoke run)")
    p.add_argument("--threads", type=int, help="COLMAP threads (default: all cores)")
    p.add_argument("--matcher", default="auto", choices=("auto", "exhaustive", "sequential"))
    p.add_argument("--camera-model", help="the lens model COLMAP fits (default: fieldfit poses' own)")
    p.add_argument("--scene", help="the scene folder to write (default runs/bench-poses/fox_<date>, git-ignored)")
    p.add_argument("--json", help="result file (default bench/results/poses_fox_<date>.json)")
    a = p.parse_args(argv)
    data, date = Path(a.data), time.strftime("%Y-%m-%d")
    if not (data / "transforms.json").is_file():
        print(f"skip: {data / 'transforms.json'} not found (the fox is in ../shared/data, see SOURCES.md)")
        return 1
    tag = f"fox_{date}" + (f"_limit{a.limit}" if a.limit else "")
    scene = Path(a.scene) if a.scene else REPO / "runs" / "bench-poses" / tag
    ref, ref_fl = reference_poses(data / "transforms.json")
    with tempfile.TemporaryDirectory() as tmp:
        photos = photos_subset(data / "images", a.limit, Path(tmp))
        cmd = [sys.executable, "-m", "fieldfit", "poses", str(photos), "--out", str(scene),
               "--downscale", str(DOWNSCALE), "--matcher", a.matcher]
        cmd += ["--camera-model", a.camera_model] if a.camera_model else []
        cmd += ["--threads", str(a.threads)] if a.threads else []
        print(" ".join(cmd[2:]), flush=True)
        load_before, t = os.getloadavg(), time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wall = time.perf_counter() - t
    print(proc.stdout, end="")
    run = {"command": " ".join(cmd[2:]), "wall_seconds": wall, "load_before": load_before,
           "load_after": os.getloadavg(), "returncode": proc.returncode, "log": proc.stdout.splitlines()}
    if proc.returncode != 0:  # e.g. the scene folder of an earlier run today: nothing measured, nothing written
        print(proc.stderr, end="")
        return 1
    stats = json.loads((scene / "poses.json").read_text())
    est, fl = sfm_poses(scene)
    cmp, aligned = {}, None
    if len(set(est) & set(ref)) >= 3:
        c = compare_poses(est, ref)
        aligned = in_ngp_frame(scene, c["similarity"])
        worst = np.argsort(-c["rotation_deg"])[:5]
        cmp = {"compared": len(c["names"]), "rotation_deg": summary(c["rotation_deg"]),
               "position_in_camera_spread": summary(c["position"]), "camera_spread_ngp_units": c["scale"],
               "worst_rotation": {c["names"][i]: float(c["rotation_deg"][i]) for i in worst}}
    payload = {
        "run": run, "scene": str(scene.resolve()), "images": stats["images"], "registered": stats["registered"],
        "not_registered": stats["not_registered"], "points": stats["points"],
        "mean_reprojection_error_px": stats["mean_reprojection_error_px"], "stage_seconds": stats["seconds"],
        "matcher": stats["matcher"], "pycolmap": stats["pycolmap"], "alignment_to_instant_ngp": cmp,
        "focal_px": {"sfm_at_full_resolution": fl * DOWNSCALE, "instant_ngp": ref_fl,
                     "ratio": fl * DOWNSCALE / ref_fl},
        "fit_next": {"sfm_scene": f"fieldfit {scene} --method rbf --time-budget 300",
                     "sfm_scene_in_ngp_frame": f"fieldfit {aligned} --method rbf --time-budget 300",
                     "instant_ngp_poses": f"fieldfit {data} --downscale {DOWNSCALE} --time-budget 300",
                     "note": f"poses --downscale {DOWNSCALE} already made the scene's images 4x smaller: fit it "
                             "with no further --downscale, at the same pixels as the instant-ngp scene at 4"},
    }
    print(json.dumps({k: payload[k] for k in ("registered", "images", "alignment_to_instant_ngp", "focal_px")},
                     indent=1))
    write(tag, payload, a.json or RESULTS / f"poses_{tag}.json")
    return 0

if __name__ == "__main__":
    sys.exit(main())
