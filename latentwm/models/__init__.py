"""The trained networks and what rebuilds or runs them: tokenizer, lam, dynamics (transformer and
conv), the flow objective, the sampler, and checkpoint (the one place models are saved and rebuilt).
Imports core, config and data; never training or evaluation."""
