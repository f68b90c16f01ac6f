"""fieldfit: fit neural fields to images, shapes and posed photos.

The import package gathers the repository's folders as subpackages:
``fieldfit.fields``, ``fieldfit.render``, ``fieldfit.mesh``, ``fieldfit.cuda``,
``fieldfit.viewer``, ``fieldfit.scenes``. Importing it compiles nothing and
touches no global state.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
