"""Training: fine-tuning, its data pipeline, schedules, mixing, resumable state, logging, distribution
and the offline demo."""
