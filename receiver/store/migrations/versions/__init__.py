"""The journal's schema revisions, oldest first: 0001_baseline.py, then one file each."""
