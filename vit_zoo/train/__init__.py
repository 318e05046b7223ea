"""Training: fine-tuning through Keras' ``fit`` on every backend, its data sources and input pipeline,
optimizers and schedule, mixing, checkpoints, logging, distribution and the offline demo."""
