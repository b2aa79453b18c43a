"""Occupancy grid: warm-up, EMA update from a density callback, lookups, state dict."""

import torch

from ovs3d_ros.core.field import OccupancyGrid


def sphere_density(c: torch.Tensor) -> torch.Tensor:
    """Dense (100) inside a radius-0.5 ball around the contracted origin, empty elsewhere."""
    return torch.where(c.norm(dim=-1) < 0.5, 100.0, 0.0)


def test_warmup_keeps_all_cells_then_threshold_carves_empty_space():
    grid = OccupancyGrid(resolution=16, threshold=0.01, ema_decay=0.9, warmup_steps=5, update_fraction=1.0)
    gen = torch.Generator().manual_seed(0)
    grid.update(0, sphere_density, step_size=0.1, generator=gen)
    assert grid.occupied_fraction() == 1.0  # warm-up: everything occupied while the estimate fills
    grid.update(10, sphere_density, step_size=0.1, generator=gen)
    centre = torch.zeros(1, 3)
    corner = torch.full((1, 3), 1.8)
    assert bool(grid.is_occupied(centre)) and not bool(grid.is_occupied(corner))
    # a ball of radius 0.5 in a [-2, 2]^3 cube: volume fraction ~ 0.52/64 (cells on the boundary count)
    assert 0.004 < grid.occupied_fraction() < 0.05


def test_ema_decays_cells_that_became_empty():
    grid = OccupancyGrid(resolution=8, threshold=0.01, ema_decay=0.5, warmup_steps=0, update_fraction=1.0)
    grid.update(1, lambda c: torch.full((c.shape[0],), 100.0), step_size=0.1)
    assert grid.occupied_fraction() == 1.0
    for step in range(2, 12):  # opacity ~1 halves per update: 2^-10 < threshold after 10 updates
        grid.update(step, lambda c: torch.zeros(c.shape[0]), step_size=0.1)
    assert float(grid.opacity.max()) < 0.01


def test_partial_updates_visit_occupied_cells_and_state_round_trip():
    grid = OccupancyGrid(resolution=8, threshold=0.01, ema_decay=0.9, warmup_steps=0, update_fraction=0.1)
    gen = torch.Generator().manual_seed(1)
    for step in range(30):
        grid.update(step, sphere_density, step_size=0.1, generator=gen)
    other = OccupancyGrid(resolution=8, threshold=0.01, ema_decay=0.9, warmup_steps=0, update_fraction=0.1)
    other.load_state_dict(grid.state_dict())
    assert torch.equal(other.occupied, grid.occupied) and torch.equal(other.opacity, grid.opacity)
    pts = torch.rand(200, 3) * 4 - 2
    assert torch.equal(grid.is_occupied(pts), other.is_occupied(pts))


def test_cell_index_and_centres_agree():
    grid = OccupancyGrid(resolution=4, threshold=0.01, ema_decay=0.9, warmup_steps=0, update_fraction=1.0)
    cells = torch.arange(64)
    assert torch.equal(grid.cell_index(grid.cell_centers(cells)), cells)


def test_measured_cells_stay_occupied_when_random_points_miss_a_small_object():
    """A 'ball' far smaller than a cell: the one random point per cell never lands in it, so its cell
    decays to empty; a cell marked as holding a measured surface point stays occupied."""
    def tiny_ball(c: torch.Tensor) -> torch.Tensor:
        return torch.where((c - torch.tensor([0.1, 0.1, 0.1])).norm(dim=-1) < 0.001, 1e4, 0.0)

    grid = OccupancyGrid(resolution=8, threshold=0.01, ema_decay=0.5, warmup_steps=0, update_fraction=1.0)
    gen = torch.Generator().manual_seed(0)
    for step in range(12):
        grid.update(step, tiny_ball, step_size=0.1, generator=gen)
    ball = torch.tensor([[0.1, 0.1, 0.1]])
    assert not bool(grid.is_occupied(ball))   # the estimate alone loses it
    grid.mark_measured(ball)
    for step in range(12, 24):
        grid.update(step, tiny_ball, step_size=0.1, generator=gen)
    assert bool(grid.is_occupied(ball)) and grid.occupied_fraction() == 1 / 8**3


def test_state_without_measured_cells_loads():
    """Checkpoints written before measured cells existed load with none marked."""
    grid = OccupancyGrid(resolution=4, threshold=0.01, ema_decay=0.9, warmup_steps=0, update_fraction=1.0)
    grid.mark_measured(torch.zeros(1, 3))
    old = {k: v for k, v in grid.state_dict().items() if k != "measured"}
    other = OccupancyGrid(resolution=4, threshold=0.01, ema_decay=0.9, warmup_steps=0, update_fraction=1.0)
    other.load_state_dict(old)
    assert not bool(other.measured.any())
    other.load_state_dict(grid.state_dict())
    assert bool(other.measured.any())
