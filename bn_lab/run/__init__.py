"""One run: training every arm on the same batches, the evaluations, the objectives, the files a
run writes as it goes (summary, provenance, TensorBoard events) and its progress.
"""
