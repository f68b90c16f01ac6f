"""Methods: field + renderer + losses + schedule, one module each."""
