"""Training, one run at a time (`bn_lab.run()` is the API call that starts one): every arm on the
same batches, the evaluations, the objectives, the files a run writes as it goes (summary,
provenance, TensorBoard events), its progress, and the checks before anything slow starts.
"""
