"""Scanning: files -> verdicts (scanner.py), face scores -> file scores (aggregate.py), the scan record format
(records.py), the HTML report and its pictures (report.py, figures.py), `forgerydet evaluate` (evaluate.py), and
enrolling a person's reference faces (enroll.py)."""
