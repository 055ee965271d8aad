"""A tracking server (`make server`) and a 2-node Ray cluster on 127.0.0.1, for the scale-out tests.

Both run in their own process groups and are stopped by their fixtures' finalisers. The cluster
is a `ray.cluster_utils.Cluster` (head + one worker node, both bound to 127.0.0.1, token auth on)
kept by a helper process: this file run as a script. It prints the address, then obeys one
command a line on stdin: `remove` kills the worker node (all its processes, no grace), `quit`
shuts everything down. Ray never starts inside the pytest process, so no Ray or auth state leaks
into other tests.
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import closing
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 90


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_group(proc: subprocess.Popen, grace_s: float = 10) -> None:
    """SIGTERM the process group, SIGKILL it after `grace_s`."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


class TrackingServer:
    """`make server` on a free 127.0.0.1 port, its store in `results` (seeded from `template`, a
    migrated empty mlflow.db, when given: a fresh store's migrations take seconds)."""

    def __init__(self, results: Path, log: Path, template: Path | None = None):
        self.results, self.port = results, free_port()
        if template is not None:
            results.mkdir(parents=True, exist_ok=True)
            shutil.copy(template, results / "mlflow.db")
        self.uri = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "PYTEST_CURRENT_TEST")}
        env["CHARRNN_RESULTS_DIR"] = str(results)
        # -o: never rebuild the venv from a test, whatever the stamp's age
        cmd = ["make", "--no-print-directory", "-o", ".venv/.installed", "server", f"PORT={self.port}",
               f"BIN={Path(sys.executable).parent}"]
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def wait_ready(self) -> "TrackingServer":
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as reply:
                    if reply.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"mlflow server not up within {START_TIMEOUT_S} s")

    def stop(self) -> None:
        stop_group(self.proc)


class LocalCluster:
    """Head + one worker node on 127.0.0.1 with token auth, kept by a helper process."""

    def __init__(self, cpus_per_node: int, log: Path):
        self.token = secrets.token_hex(16)
        self.temp_dir = tempfile.mkdtemp(prefix="rc", dir="/tmp")  # short: Ray's socket paths
        # RAY_TMPDIR: sessions and `ray_current_cluster` stay out of the machine's /tmp/ray
        self.env = {**os.environ, **self.ray_env(), "PYTHONPATH": str(REPO), "RAY_TMPDIR": self.temp_dir}
        self.proc = subprocess.Popen([sys.executable, __file__, str(cpus_per_node)],
                                     cwd=REPO, env=self.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=open(log, "w"), text=True, start_new_session=True)
        self.address = self.head_node_id = self.worker_node_id = ""

    def ray_env(self) -> dict[str, str]:
        """What every process of the cluster, and each driver, needs: token auth, 127.0.0.1 nodes."""
        # RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0: Ray keeps 127.0.0.1 as the node address (by default
        # it swaps in this host's routable IP), so every Ray server binds to 127.0.0.1 only.
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token,
                "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}

    def wait_ready(self) -> "LocalCluster":
        line = self.proc.stdout.readline().strip()  # the helper prints these once both nodes are up
        if not line.startswith("127.0.0.1:"):
            raise RuntimeError(f"cluster helper failed: {line!r}")
        self.address, self.head_node_id, self.worker_node_id = line.split()
        return self

    def command(self, text: str) -> str:
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def remove_worker_node(self) -> list[str]:
        """Kill the worker node; the names of the task workers that died with it."""
        reply = self.command("remove").split()
        assert reply[:1] == ["removed"], reply
        return reply[1:]

    def stop(self) -> None:
        try:
            if self.proc.poll() is None:
                self.command("quit")
                self.proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            pass
        stop_group(self.proc, grace_s=5)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def kill_node(cluster, node) -> list[str]:
    """SIGKILL a node as if its machine died: its Ray processes and, unlike `remove_node` alone,
    the task workers its raylet started (left alive, they would finish their task as orphans).
    Returns the names of those workers (`ray::train_task` for one that was training)."""
    import psutil
    from ray._private import ray_constants

    raylets = [p.process.pid for p in node.all_processes[ray_constants.PROCESS_TYPE_RAYLET]]
    workers = [child for pid in raylets for child in psutil.Process(pid).children(recursive=True)]
    names = [proc.name() for proc in workers]
    cluster.remove_node(node, allow_graceful=False)
    for proc in workers:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    return names


def _serve_cluster(cpus: int) -> None:
    """The helper process: start the cluster, print its address, obey stdin."""
    from ray.cluster_utils import Cluster

    node = {"num_cpus": cpus, "node_ip_address": "127.0.0.1"}
    cluster = Cluster(initialize_head=True, shutdown_at_exit=True,
                      head_node_args={**node, "include_dashboard": False})
    worker = cluster.add_node(**node)
    cluster.wait_for_nodes()
    print(cluster.address, cluster.head_node.node_id, worker.node_id, flush=True)
    try:
        for line in sys.stdin:
            if line.strip() == "remove":
                print("removed", *kill_node(cluster, worker), flush=True)
            elif line.strip() == "quit":
                break
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    _serve_cluster(int(sys.argv[1]))
