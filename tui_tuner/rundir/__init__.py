"""The run-directory contract: runs, status, events, experiment log, sweeps."""
