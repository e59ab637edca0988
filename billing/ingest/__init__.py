"""The FOCUS import engine: files → validated, attributed, flagged charges, in bulk.

reader.py reads CSV, gzip CSV and Parquet into batches of text columns; columns.py knows FOCUS
column names across versions; rows.py turns a batch into charge rows (parsing, attribution,
flags, fingerprints); loader.py writes them with the fastest path each database has; pipeline.py
is the import service that ties them together in one transaction.
"""
