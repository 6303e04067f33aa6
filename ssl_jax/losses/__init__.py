"""Pure-function self-supervised losses (filled in by the losses work)."""
