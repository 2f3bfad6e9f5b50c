"""The data a run trains on: MNIST's sources and file formats, the splits, the batch order."""
