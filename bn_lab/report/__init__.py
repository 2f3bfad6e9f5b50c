"""Reading finished runs and sweeps back: outcomes, intervals, the printed table, a run's figures,
a sweep's report and its figures. Never imports TensorFlow, the training or the sweep driver.
"""
