"""fieldfit.fields.components."""
