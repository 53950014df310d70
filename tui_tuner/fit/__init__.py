"""Hardware (NVML), the memory estimate, measured peaks, the fit check."""
