"""Grids: `ablations/*.yaml` parsed into RunSpecs, one invocation's session against the store,
the executors that train the specs (local, Ray), their workers and locks, and sequential seeding."""
