"""One module per lab scenario; each exposes ``run(seed, trials) -> LabResult``."""
