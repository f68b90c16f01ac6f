"""fieldfit.viewer."""
