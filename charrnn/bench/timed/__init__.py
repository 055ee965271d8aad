"""The timed kernel suite as pytest-benchmark files: `charrnn bench` runs this directory."""
