"""Evaluation: the metric registry, the rollout evaluation on the test videos, its summary (intervals,
verdict), the action conditions and sweep, and steering a trained model by hand."""
