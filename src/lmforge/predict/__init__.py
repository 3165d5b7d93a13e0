"""`lmforge predict`: a registered model over a data file of any size, streamed chunk by chunk.

`reader.py` yields chunks of (row id, row number, text) from CSV / JSONL / Parquet without
loading the file, `writer.py` writes the output table to a temporary file renamed into place
at the end, and `run.py` scores the chunks with the serving predictor (`serve/predictor.py`),
so a row's answer is what `/v1/classify` answers for its text.
"""

from lmforge.predict.run import PredictResult, predict_file

__all__ = ["PredictResult", "predict_file"]
