"""Files on disk, read and written safely, whoever reads or writes them (configs, data, runs, reports):
atomic writes, and the one opener of a file bn_lab reads (a FIFO or a device is refused, never read)."""
