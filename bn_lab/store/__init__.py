"""Files on disk: atomic writes, a run's directory and what its files hold, claiming a directory."""
