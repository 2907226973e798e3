"""Data sets as the API takes them: JSON arrays and the built-in samples (``ingest``), the file
formats (``uploads``: CSV, Parquet, .npz; ``tables``: the columnar reading they share).

No Flask here; calls go one way: uploads -> tables -> ingest.
"""
