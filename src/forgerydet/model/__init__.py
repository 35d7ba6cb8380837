"""The detector: its config (config.py), timm backbone and weights (backbone.py, weights.py, weights_mapping.py),
DifferenceAttention (attention.py), the memory bank (bank.py, coreset.py, diskbank.py, references.py), the model
itself (detector.py), its input tensors (inputs.py), losses (losses.py), calibration (calibration.py) and the
checkpoint file (checkpoint.py; frozen.py: backbone tensors it stores by reference to their pretrained weights)."""
