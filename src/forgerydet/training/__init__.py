"""Training: its config (config.py), datasets (data.py), augmentation (augment.py), devices and DDP
(distributed.py), validation and calibration (validate.py), the loop (loop.py), and every bank write outside a
training step, at epoch end and by `rebuild-bank` (bankfill.py)."""
