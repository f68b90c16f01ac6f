"""fieldfit.sfm: camera poses for plain photos or a video, by structure-from-motion (COLMAP through pycolmap, CPU).

``make_scene(source, out, PosesOptions())`` is ``fieldfit poses SOURCE --out OUT``: ``images`` picks and writes the
images, ``colmap`` runs features, matching and mapping, ``export`` writes transforms.json and the points,
``align`` compares poses up to a similarity (tests, bench/poses_bench.py). pycolmap is imported on first use
(``pip install "fieldfit[sfm]"``), so importing this package needs nothing extra.
"""

from .align import compare_poses, rotation_angle_deg, umeyama
from .colmap import SfmOptions
from .poses import PosesOptions, default_threads, make_scene

__all__ = ["PosesOptions", "SfmOptions", "compare_poses", "default_threads", "make_scene", "rotation_angle_deg",
           "umeyama"]
