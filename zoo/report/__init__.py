"""Reports: a run's figures, sweep tables, `zoo explain`'s pictures and `make demo`."""
