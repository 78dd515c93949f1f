"""The real garbage collector deletes dependents of a deleted owner."""

import kubernetes.client
import pytest
from kubernetes.client.exceptions import ApiException

from tests.support.controlplane import ControlPlane
from tests.support.wait import wait_for

HOLD = "envtest.audioextract.dev/hold"


def _read(core: kubernetes.client.CoreV1Api, name: str, namespace: str) -> object | None:
    try:
        return core.read_namespaced_config_map(name, namespace)
    except ApiException as e:
        if e.status == 404:
            return None
        raise


@pytest.mark.parametrize("propagation", ["Background", "Foreground"])
def test_dependent_is_deleted_with_its_owner(
    controller_manager: ControlPlane, namespace: str, propagation: str
) -> None:
    core = kubernetes.client.CoreV1Api(controller_manager.api_client)
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    owner_ref = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "owner",
        "uid": owner.metadata.uid,
        "blockOwnerDeletion": True,
    }
    # The dependent carries a finalizer of ours, so each step can be observed.
    dependent = {"name": "dependent", "ownerReferences": [owner_ref], "finalizers": [HOLD]}
    core.create_namespaced_config_map(namespace, {"metadata": dependent})
    bystander = core.create_namespaced_config_map(namespace, {"metadata": {"name": "bystander"}})

    core.delete_namespaced_config_map("owner", namespace, propagation_policy=propagation)

    # The collector deletes the dependent (which waits on our finalizer) ...
    wait_for(
        lambda: core.read_namespaced_config_map("dependent", namespace).metadata.deletion_timestamp,
        what="the collector to delete the dependent",
    )
    held_owner = _read(core, "owner", namespace)
    if propagation == "Foreground":
        # ... and a foreground-deleted owner stays until its blocking dependents are gone.
        assert held_owner is not None
        assert "foregroundDeletion" in held_owner.metadata.finalizers
    else:
        assert held_owner is None
    core.patch_namespaced_config_map(
        "dependent", namespace, [{"op": "remove", "path": "/metadata/finalizers"}]
    )
    wait_for(lambda: _read(core, "dependent", namespace) is None, what="the dependent to be gone")
    wait_for(lambda: _read(core, "owner", namespace) is None, what="the owner to be gone")
    kept = core.read_namespaced_config_map("bystander", namespace)
    assert kept.metadata.uid == bystander.metadata.uid
