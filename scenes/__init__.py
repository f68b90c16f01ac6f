"""fieldfit.scenes: capture-format loaders -> one ``Scene`` type; built-in procedural scenes.

Knows nothing of fields or renderers. See ``base`` for the camera / image conventions.
"""

from .base import Frame, Scene
from .blender import load_blender
from .colmap import load_colmap
from .detect import load_scene
from .dtu import load_dtu
from .llff import load_llff
from .nerfstudio import load_nerfstudio
from .procedural import make_builtin_radiance_scene

__all__ = [
    "Frame",
    "Scene",
    "load_blender",
    "load_colmap",
    "load_dtu",
    "load_llff",
    "load_nerfstudio",
    "load_scene",
    "make_builtin_radiance_scene",
]
