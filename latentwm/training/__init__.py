"""Training: the one loop (loop), its curve and data parallelism, one fit module per trained component
(fit_tokenizer, fit_lam, fit_dynamics) and encode (frames -> latent and action stores)."""
