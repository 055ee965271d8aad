"""Run order: seed blocks that each hold every arm once, shuffled per block from `order_seed`;
speed grids train every run alone."""
from __future__ import annotations

from itertools import takewhile

import pytest
from grid_support import grid_data, write_grid
from tests.claim_support import SCOPE

from charrnn.cli import main
from charrnn.grid.executors import exclusive_resources
from charrnn.grid.order import execution_order
from charrnn.grid.spec import GridError, load_grid


def blocks_of(slots):
    found: dict[int, list] = {}
    for slot in slots:
        found.setdefault(slot.block, []).append(slot)
    return found


def tuned_grid(tmp_path, **overrides):
    data = grid_data(tune={"lr": [0.001, 0.003, 0.01]}, seeds=[0, 1, 2, 3, 4], **overrides)
    return load_grid(write_grid(tmp_path, data))


def test_every_block_holds_every_arm_once_and_block_orders_differ(tmp_path):
    grid = tuned_grid(tmp_path)
    specs = grid.expand("quick")
    slots = execution_order(specs, grid.order_seed)
    assert sorted(s.spec.identity for s in slots) == sorted(s.identity for s in specs)
    arms = {s.arm for s in specs}
    assert len(arms) == 4 * 3
    blocks = blocks_of(slots)
    assert list(blocks) == [1, 2, 3, 4, 5]
    orders = []
    for number, block in blocks.items():
        assert {s.spec.seed for s in block} == {number - 1}                     # one seed per block
        assert sorted(s.spec.arm for s in block) == sorted(arms)                # every arm once
        assert [s.position for s in block] == list(range(1, len(arms) + 1))
        orders.append([s.spec.arm for s in block])
    assert len({tuple(o) for o in orders}) == len(orders)                       # no two blocks alike
    assert orders[0] != sorted(orders[0]) or orders[1] != sorted(orders[1])     # shuffled, not file order


def test_the_order_is_reproducible_from_the_order_seed_and_changes_with_it(tmp_path):
    grid = tuned_grid(tmp_path)
    first = [s.spec.identity for s in execution_order(grid.expand("quick"), 0)]
    assert first == [s.spec.identity for s in execution_order(grid.expand("quick"), 0)]
    assert first != [s.spec.identity for s in execution_order(grid.expand("quick"), 1)]
    other = load_grid(write_grid(tmp_path, grid_data(tune={"lr": [0.001, 0.003, 0.01]}, seeds=[0, 1, 2, 3, 4],
                                                     order_seed=7)))
    assert other.order_seed == 7


def test_two_arms_alternate_between_consecutive_blocks(tmp_path):
    grid = load_grid(write_grid(tmp_path, grid_data(axes={"cell": ["vanilla", "gru"]}, seeds=[0, 1, 2, 3])))
    orders = [[s.spec.arm for s in b] for b in blocks_of(execution_order(grid.expand("quick"), 3)).values()]
    assert all(a != b for a, b in zip(orders, orders[1:]))


def test_dry_run_prints_blocks_positions_and_arms_in_execution_order(tmp_path, results_dir, capsys):
    path = write_grid(tmp_path, grid_data(seeds=[0, 1]))
    assert main(["grid", str(path), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "order_seed 0" in lines[0]
    plan = takewhile(lambda line: line.strip() and not line.startswith("decidability"), lines[2:])
    rows = [line.split()[:3] for line in plan]
    expected = [[str(s.block), str(s.position), s.spec.run_name]
                for s in execution_order(load_grid(path).expand("quick"), 0)]
    assert rows == expected


@pytest.mark.parametrize("value", [-1, 1.5, "x", True])
def test_a_bad_order_seed_is_a_one_line_grid_error(tmp_path, value):
    with pytest.raises(GridError, match="order_seed: .*expected an integer >= 0"):
        load_grid(write_grid(tmp_path, grid_data(order_seed=value)))


def test_a_grid_judging_speed_runs_every_spec_alone(tmp_path):
    speed = {"source": "test", **SCOPE, "metric": "tokens_per_s", "expect": {"cell": "gru", "better_than": "vanilla"}}
    timed = load_grid(write_grid(tmp_path, grid_data(claims=[speed])))
    assert timed.measures_speed and all(s.exclusive for s in timed.expand("quick"))
    plain = load_grid(write_grid(tmp_path, grid_data()))
    assert not plain.measures_speed and not any(s.exclusive for s in plain.expand("quick"))


def test_only_the_runs_a_speed_claim_judges_train_alone(tmp_path):
    speed = {"source": "test", **SCOPE, "metric": "tokens_per_s", "where": {"hidden_size": 16},
             "expect": {"cell": "gru", "better_than": "vanilla"}}
    grid = load_grid(write_grid(tmp_path, grid_data(claims=[speed])))
    alone = {s.config.hidden_size for s in grid.expand("quick") if s.exclusive}
    shared = {s.config.hidden_size for s in grid.expand("quick") if not s.exclusive}
    assert (alone, shared) == ({16}, {8})


def test_the_sweep_arms_of_a_speed_claims_axis_train_alone_too(tmp_path):
    speed = {"source": "test", **SCOPE, "metric": "tokens_per_s", "where": {"hidden_size": 16},
             "expect": {"cell": "gru", "better_than": "vanilla"}}
    grid = load_grid(write_grid(tmp_path, grid_data(claims=[speed], axes={"cell": ["vanilla", "gru", "lstm"],
                                                                            "hidden_size": [8, 16]})))
    alone = {(s.config.cell, s.config.hidden_size) for s in grid.expand("quick") if s.exclusive}
    assert alone == {("vanilla", 16), ("gru", 16), ("lstm", 16)}      # lstm: no arm of the claim, on its sweep


def test_an_exclusive_ray_task_holds_every_cpu_of_the_largest_live_node():
    nodes = [{"Alive": True, "Resources": {"CPU": 8.0}}, {"Alive": True, "Resources": {"CPU": 16.0, "GPU": 2.0}},
             {"Alive": False, "Resources": {"CPU": 64.0}}]
    assert exclusive_resources(nodes) == (16, 1.0)
    assert exclusive_resources([{"Alive": True, "Resources": {"CPU": 2.0}}]) == (2, 0.0)


def test_dry_run_says_what_its_plan_cannot_list(tmp_path, results_dir, capsys):
    speed = {"source": "test", **SCOPE, "metric": "tokens_per_s", "expect": {"better_than": 1.0}}
    path = write_grid(tmp_path, grid_data(axes={}, claims=[speed], tune={"lr": [0.001, 0.003, 0.01]},
                                          tune_bounds={"lr": [0.0001, 0.1]}))
    assert main(["grid", str(path), "--dry-run"]) == 0
    head = capsys.readouterr().out.splitlines()[0]
    assert "the runs it judges train alone" in head and "adds runs within tune_bounds (lr)" in head
