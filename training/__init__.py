"""Training machinery: build, loop, checkpoints, logging, evaluation."""
