"""Loss functions with analytic derivatives (filled in by the losses work)."""
