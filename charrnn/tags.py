"""Names of the MLflow tags (and the parent run's grid artifact) charrnn writes.

Plain strings: importing this loads nothing else, so code that runs where MLflow must not be
touched (a Ray worker) can still name them."""

TAG_PREFIX = "charrnn."
HASH_TAG = TAG_PREFIX + "config_hash"          # identity of a resolved TrainConfig
FAILURE_TAG = TAG_PREFIX + "failure"           # why a run ended FAILED or KILLED
HEARTBEAT_TAG = TAG_PREFIX + "heartbeat"       # ms timestamp of the run's last metric batch
RESUMED_TAG = TAG_PREFIX + "resumed_from_step"
ROLE_TAG = TAG_PREFIX + "role"                 # grid (an invocation's parent run) | run (a RunSpec)
GRID_ROLE, RUN_ROLE = "grid", "run"
PARENT_TAG = "mlflow.parentRunId"
GRID_ARTIFACT = "grid.yaml"                    # the grid file, logged on every invocation's parent run
NODE_TAG = TAG_PREFIX + "ray_node"            # id of the Ray node that last trained the run
NODE_LOST_TAG = TAG_PREFIX + "node_lost"       # a node died under the run: how often, and Ray's words
