"""Names of the MLflow tags (and the parent run's grid artifact, and a run's phase-time metrics) charrnn writes.

Plain strings: importing this loads nothing else, so code that runs where MLflow must not be
touched (a Ray worker) can still name them."""

# MLflow run statuses (mlflow.entities.RunStatus names), as stored and compared
RUNNING, SCHEDULED, FINISHED, FAILED, KILLED = "RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED"
TAG_PREFIX = "charrnn."
IDENTITY_TAG = TAG_PREFIX + "identity"         # stable identity: TrainConfig.identity_hash()
FAILURE_TAG = TAG_PREFIX + "failure"           # why a run ended FAILED or KILLED
HEARTBEAT_TAG = TAG_PREFIX + "heartbeat"       # ms timestamp of the run's last metric batch
RESUMED_TAG = TAG_PREFIX + "resumed_from_step"
STEP_GRAPH_TAG = TAG_PREFIX + "step_graph"     # the training step captured as CUDA graphs, or why eager
ROLE_TAG = TAG_PREFIX + "role"                 # grid (an invocation's parent run) | run (a RunSpec)
GRID_ROLE, RUN_ROLE = "grid", "run"
PARENT_TAG = "mlflow.parentRunId"
GRID_ARTIFACT = "grid.yaml"                    # the grid file, logged on every invocation's parent run
TEST_WINDOWS_ARTIFACT = "test_windows.json"    # a run's per-test-window sums (run.train.WindowRecord)
SEQUENTIAL_PREFIX = TAG_PREFIX + "sequential."  # + seeds_used, looks_planned, look, stop_reason, alpha_per_look
# MLflow's own source tags (the UI links a run to its commit); equal to mlflow.utils.mlflow_tags'.
SOURCE_TYPE_TAG, SOURCE_NAME_TAG = "mlflow.source.type", "mlflow.source.name"
GIT_COMMIT_TAG, GIT_BRANCH_TAG = "mlflow.source.git.commit", "mlflow.source.git.branch"
GIT_REPO_URL_TAG, GIT_DIRTY_TAG = "mlflow.source.git.repoURL", "mlflow.source.git.dirty"
NOTE_TAG = "mlflow.note.content"                # a run's description in the UI (markdown)
NODE_TAG = TAG_PREFIX + "ray_node"            # id of the Ray node that last trained the run
NODE_LOST_TAG = TAG_PREFIX + "node_lost"       # a node died under the run: how often, and Ray's words
# Experiment tags of preregistration: CLAIM_TAG_PREFIX + <claim id, "=" as ":"> + .text / .sha256 / .when
CLAIM_TAG_PREFIX = TAG_PREFIX + "claim."
CLAIM_LOGGED_BEFORE_RUNS = "before any run"    # `.when` of a claim logged before its grid's first run
TUNE_TRIED_TAG = TAG_PREFIX + "tune_tried"    # parent run: JSON, key -> every value some arm tried (extensions too)
# How a run's speed was measured (every grid run carries one); the sentence a page shows for each
SPEED_TAG = TAG_PREFIX + "speed_measurement"
EXCLUSIVE, SERIAL, SHARED = "exclusive", "serial", "shared"
SPEED_MEASUREMENTS = {
    EXCLUSIVE: "each run trained alone: its grid judges speed, so the executor trained no other run beside "
               "it (local: one at a time; Ray: one task holding all of a node's CPUs, nothing else submitted)",
    SERIAL: "runs trained one at a time in one process (local executor)",
    SHARED: "runs trained several at a time (Ray), sharing the machine: their speeds are not clean measurements",
}
# Who holds a RUNNING run (resume and reaping read them; `session.py`); removed when the run ends.
OWNER_HOST_TAG, OWNER_PID_TAG = TAG_PREFIX + "owner_host", TAG_PREFIX + "owner_pid"
INVOCATION_TAG = TAG_PREFIX + "invocation"     # the grid invocation (its lock file) that owns the run
BOOKKEEPING_TAGS = (HEARTBEAT_TAG, OWNER_HOST_TAG, OWNER_PID_TAG, INVOCATION_TAG)
REPORT_ARTIFACT_DIR = "report"                 # `charrnn report` logs <experiment>.html here on the latest parent
ARMS_TABLE = "arms.json"                       # the parent run's per-arm table (`mlflow.log_table`)
CLAIM_METRIC_PREFIX = "claim."                 # parent-run metrics claim.<id>.effect / .low / .high
VERDICT_TAG_PREFIX = "verdict."                # parent-run tags verdict.<id>: the verdict after Holm


def verdict_tag(claim_id: str) -> str:
    """`verdict.<id>`, each character MLflow refuses in a tag name (e.g. `=`) as `_`."""
    return VERDICT_TAG_PREFIX + "".join(c if c.isalnum() or c in "_.- /" else "_" for c in claim_id)

# A run's wall time by phase, logged as metrics time_<phase>_s (charrnn.run.phases says what each covers)
RUN_PHASES = ("startup", "open", "setup", "provenance", "mlflow", "train", "eval", "checkpoint", "outputs", "other")
OPENING, TRAINING = "open", "train"   # creating the run (the grid's session logs it); the training steps


def phase_metric(phase: str) -> str:
    """`time_<phase>_s`: the run metric of one phase's seconds."""
    return f"time_{phase}_s"


TIME_METRICS = tuple(phase_metric(p) for p in RUN_PHASES)
