"""The statistics behind the reports, free of torch: runs as tidy frames, claims, verdicts,
intervals over seeds, nuisance tuning and budget views."""
