"""fieldfit.fields."""
