"""Kill create, start, delete, run and exec at each of their steps (ONGGI_FAULT), and their
children at each of theirs; after `delete --force` no process, state dir, mount, cgroup or
network device of the container is left, and its id can be created again. The matrix of
outcomes is printed at the end of the run (and written to $ONGGI_FAULT_MATRIX)."""

from __future__ import annotations

import pytest
from faultlib import CELLS, POINTS, run_cell


def test_the_points_are_found():
    """The matrix is read from the sources: an empty one would test nothing."""
    assert {"create:forked", "create:state-saved", "init:created", "init:exec-fifo",
            "start:released", "delete:killed", "run:started"} <= set(POINTS)


@pytest.mark.parametrize(("verb", "point"), CELLS, ids=[f"{v}-{p}" for v, p in CELLS])
def test_killed_at_each_step_leaves_nothing(rig, verb, point):
    run_cell(rig, verb, point)
