"""Training pairs: the pairs.csv format and its splits (table.py, its only reader and writer), finding real/fake
files (discover.py), frame-aligned crops of real and fake media (aligned.py), self-blended pseudo-fakes from real
faces (selfblend.py, blend maths in sbi.py), and the `forgerydet pairs` dispatcher (build.py)."""
