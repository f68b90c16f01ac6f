"""Views: how each kind of run is drawn. Found through fieldfit.viewer.registry, never imported eagerly."""
