"""What every method of one task shares: the radiance task's data and its evaluation (the SCENE picks the task:
an image, a shape, or posed photos)."""
