"""Real Slurm jobs on a 3-node virtual cluster (network namespaces on a bridge, real slurmctld,
slurmd and munged; see tests/support/slurm_cluster.py). Needs root; skips with the reason
otherwise."""
from __future__ import annotations

import pytest

from support.slurm_cluster import VirtualCluster, build_cluster, unavailable_reason

pytestmark = [pytest.mark.root, pytest.mark.slow]


@pytest.fixture(scope="session")
def cluster(tmp_path_factory) -> VirtualCluster:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    built = build_cluster(tmp_path_factory.mktemp("vcluster"))
    try:
        yield built
    finally:
        built.stop()


def test_each_step_runs_on_its_own_node_with_its_own_address(cluster):
    shown = cluster.slurm(["srun", "-N3", "-l", "bash", "-c",
                           "echo $SLURMD_NODENAME $(ip -4 -o addr show eth0 | awk '{print $4}')"])
    seen = {line.split()[1]: line.split()[2].split("/")[0]
            for line in shown.stdout.splitlines() if line.strip()}
    assert seen == {node.name: node.address for node in cluster.nodes}
