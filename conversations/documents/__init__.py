"""Documents a user attaches: read page by page (reading.py) by the job worker (jobs.py,
ingest.py), then sent whole or by their most relevant passages (retrieval.py, ranking.py),
with what a question will cost shown before it is sent (preview.py)."""
