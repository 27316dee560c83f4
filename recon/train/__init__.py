"""Training a field: the loop, the losses, the schedules, the guard, the per-view corrections."""
