"""The kernel suite: timed cases and workloads for custom cells against fused kernels, reading its
pytest-benchmark JSON, and `make gpu-check`."""
