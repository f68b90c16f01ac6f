"""The three COLMAP stages through pycolmap (4.x), on the CPU: SIFT features, matching, incremental mapping.

Every stage writes into one COLMAP database (``database.db``). Features: SIFT on images shrunk to at most
``max_size`` pixels on their longer side (the keypoints are given in full-image pixels), ``threads`` threads, one
shared camera of ``camera_model`` (``single_camera``) or one per image. Matching: every pair ("exhaustive") or
each image with its neighbours in name order ("sequential": the 10 next ones and then 2^k apart; loop detection
only with a vocabulary tree). Mapping: COLMAP's incremental mapper with a fixed random seed (on one thread the same
input gives the same model; more threads may change the order of work); it may split the images into several
models, of which the caller keeps the largest. COLMAP's own log is silenced unless ``verbose`` (fieldfit reports
each stage and every failure itself).
"""

import contextlib
from dataclasses import dataclass
from pathlib import Path

from fieldfit.errors import InputError

MIN_PYCOLMAP = (4, 0)
CAMERA_MODELS = ("SIMPLE_RADIAL", "PINHOLE", "OPENCV")
MATCHERS = ("auto", "exhaustive", "sequential")
EXHAUSTIVE_UP_TO = 60  # auto: every pair up to this many images, neighbours in name order beyond
MIN_INLIERS = 15  # COLMAP's default: fewer verified matches and a pair is not used


@dataclass
class SfmOptions:
    camera_model: str = "SIMPLE_RADIAL"
    single_camera: bool = True
    matcher: str = "auto"
    max_size: int = 1600
    threads: int = 1
    vocab_tree: Path | None = None
    verbose: bool = False
    seed: int = 0


def require_pycolmap():
    """pycolmap, or an InputError saying how to install it."""
    try:
        import pycolmap
    except ImportError:
        raise InputError("fieldfit poses", "needs pycolmap, which is not installed",
                         'pip install "fieldfit[sfm]"') from None
    version = getattr(pycolmap, "__version__", "0")
    parts = tuple(int(x) if x.isdigit() else 0 for x in version.split(".")[:2])
    if parts < MIN_PYCOLMAP or not hasattr(pycolmap, "FeatureExtractionOptions"):
        raise InputError("fieldfit poses", f"needs pycolmap {'.'.join(map(str, MIN_PYCOLMAP))} or newer, "
                         f"found {version}", 'pip install -U "fieldfit[sfm]"')
    return pycolmap


@contextlib.contextmanager
def colmap_log(verbose: bool):
    """COLMAP's log silenced (fatal errors only) for the duration, or left as it is when verbose."""
    import pycolmap

    before = pycolmap.logging.minloglevel
    if not verbose:
        pycolmap.logging.minloglevel = 3
    try:
        yield
    finally:
        pycolmap.logging.minloglevel = before


def choose_matcher(matcher: str, n_images: int, video: bool) -> str:
    """The matcher "auto" stands for: sequential for a video, exhaustive for up to 60 photos, sequential beyond."""
    if matcher != "auto":
        return matcher
    return "sequential" if video or n_images > EXHAUSTIVE_UP_TO else "exhaustive"


def extract(db: Path, images: Path, names: list[str], o: SfmOptions) -> dict:
    """SIFT features of ``names`` into ``db``. Returns {"features_mean", "read": names COLMAP read}."""
    import pycolmap

    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = o.camera_model
    ext = pycolmap.FeatureExtractionOptions()
    ext.num_threads = o.threads
    ext.max_image_size = o.max_size
    ext.use_gpu = False
    mode = pycolmap.CameraMode.SINGLE if o.single_camera else pycolmap.CameraMode.PER_IMAGE
    pycolmap.extract_features(db, images, image_names=names, camera_mode=mode, reader_options=reader,
                              extraction_options=ext, device=pycolmap.Device.cpu)
    database = pycolmap.Database.open(db)
    try:
        read = sorted(im.name for im in database.read_all_images())
        n = database.num_images()
        mean = database.num_keypoints() / n if n else 0.0
    finally:
        database.close()
    return {"features_mean": mean, "read": read}


def match(db: Path, matcher: str, o: SfmOptions) -> dict:
    """Match the features in ``db`` (``matcher``: exhaustive | sequential). Returns {"pairs", "verified"}."""
    import pycolmap

    opts = pycolmap.FeatureMatchingOptions()
    opts.num_threads = o.threads
    opts.use_gpu = False
    if matcher == "exhaustive":
        pycolmap.match_exhaustive(db, matching_options=opts, device=pycolmap.Device.cpu)
    else:
        pairing = pycolmap.SequentialPairingOptions()
        pairing.num_threads = o.threads
        if o.vocab_tree is not None:
            pairing.loop_detection = True
            pairing.vocab_tree_path = str(o.vocab_tree)
        pycolmap.match_sequential(db, matching_options=opts, pairing_options=pairing, device=pycolmap.Device.cpu)
    database = pycolmap.Database.open(db)
    try:
        pairs = database.num_matched_image_pairs()
        _, inliers = database.read_two_view_geometry_num_inliers()
    finally:
        database.close()
    return {"pairs": int(pairs), "verified": int(sum(1 for k in inliers if k >= MIN_INLIERS))}


def reconstruct(db: Path, images: Path, work: Path, o: SfmOptions):
    """Incremental mapping of ``db``; the largest model (most registered images), or None when there is none."""
    import pycolmap

    opts = pycolmap.IncrementalPipelineOptions()
    opts.num_threads = o.threads
    opts.random_seed = o.seed
    opts.min_model_size = 3  # COLMAP drops smaller models only when it already has one
    work.mkdir(parents=True, exist_ok=True)
    pycolmap.set_random_seed(o.seed)
    models = pycolmap.incremental_mapping(db, images, work, options=opts)
    if not models:
        return None
    return max(models.values(), key=lambda r: (r.num_reg_images(), r.num_points3D()))


def shrink(rec, n: int, sizes: dict) -> None:
    """Make ``rec``, found on full-size photos, the model of the same photos downscaled n x n by
    ``images.copy_photos`` (whole n x n blocks from the top-left corner averaged, so a pixel position x becomes
    x / n exactly): focal lengths, principal points and 2-D points divided by n, each camera the size of its
    images (``sizes``: name -> (w, h) of the small image). Distortion coefficients are unitless: kept."""
    import numpy as np

    shrunk = set()
    for image in rec.images.values():
        cam = rec.cameras[image.camera_id]
        if image.camera_id not in shrunk:
            params = np.array(cam.params, dtype=np.float64)
            idx = [*cam.focal_length_idxs(), *cam.principal_point_idxs()]
            params[idx] /= n
            cam.params = params
            cam.width, cam.height = (int(v) for v in sizes[image.name])
            shrunk.add(image.camera_id)
        for point in image.points2D:
            point.xy = np.asarray(point.xy, dtype=np.float64) / n
    rec.update_point_3d_errors()


__all__ = ["CAMERA_MODELS", "MATCHERS", "SfmOptions", "choose_matcher", "colmap_log", "extract", "match",
           "reconstruct", "require_pycolmap", "shrink"]
