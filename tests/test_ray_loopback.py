"""A local Ray started by `charrnn grid --executor ray` listens on 127.0.0.1 only, with token auth:
its listening sockets are read (psutil reads /proc/net/tcp and tcp6) while the grid runs."""
from __future__ import annotations

import ipaddress

import psutil
import pytest
from grid_support import empty_store_db, kill_tree, start_charrnn, store, wait_for, write_grid  # noqa: F401


def listening(tree: list[psutil.Process]) -> dict[str, set[str]]:
    """process name → the addresses its TCP sockets listen on (processes gone meanwhile are skipped)."""
    found: dict[str, set[str]] = {}
    for proc in tree:
        try:
            addresses = {c.laddr.ip for c in proc.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN}
            if addresses:
                found.setdefault(proc.name(), set()).update(addresses)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    mapped = getattr(address, "ipv4_mapped", None)   # ::ffff:127.0.0.1 on a dual-stack socket
    return address.is_loopback or bool(mapped and mapped.is_loopback)


def test_the_loopback_check_tells_loopback_from_every_interface():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("::ffff:127.0.0.1")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("192.0.2.2")


@pytest.mark.slow
def test_a_local_ray_grid_listens_on_loopback_only_with_token_auth(store, tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.delenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", raising=False)   # the CLI sets it itself
    path = write_grid(tmp_path, fixed={"hidden_size": 8, "batch_size": 4, "seq_len": 16, "steps": 400,
                                       "eval_interval": 100, "eval_batches": 1, "sample_length": 20,
                                       "device": "cpu"}, axes={"cell": ["gru"]}, seeds=[0, 1], claims=None)
    proc = start_charrnn("grid", str(path), "--executor", "ray", log=tmp_path / "grid.log")
    try:
        driver = psutil.Process(proc.pid)

        def servers():
            tree = [driver, *driver.children(recursive=True)]
            found = listening(tree)
            return (tree, found) if {"gcs_server", "raylet"} <= set(found) else None

        tree, found = wait_for(servers, timeout=180, every=0.5)
        gcs = next(p for p in tree if p.name() == "gcs_server")
        assert gcs.environ().get("RAY_AUTH_MODE") == "token"
        assert {name: sorted(ip for ip in ips if not is_loopback(ip)) for name, ips in found.items()} \
            == {name: [] for name in found}, found
        assert proc.wait(timeout=300) == 0, (tmp_path / "grid.log").read_text()
    finally:
        if proc.poll() is None:
            kill_tree(proc)
