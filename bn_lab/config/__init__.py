"""Configuration: every key with its default and check, YAML files, `--set`, the arms a run compares,
names, and the memory a run will need. Pure Python: no TensorFlow.
"""
