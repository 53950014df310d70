"""Chat models from runs/checkpoints, evaluation, answer metrics, transcripts."""
