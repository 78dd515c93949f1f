"""Leader election with a coordination.k8s.io Lease.

kopf's peering is not leader election (with equal priorities every instance pauses),
so the operator holds a Lease before its reconcile loop acts. Only the holder
reconciles; the others watch and wait. The holder renews every third of the lease
duration; another instance takes over once ``renewTime + leaseDurationSeconds`` has
passed, and the replace carries the read ``resourceVersion`` so that two candidates
cannot both win.
"""

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from audioextract.handlers.kube import Kube, is_conflict

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


def _fmt(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(ts: str | None) -> datetime | None:
    if not ts:
        return None
    for fmt in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.strptime(ts, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


class LeaderElector:
    """Acquires and renews one Lease; ``is_leader`` says whether this instance may act."""

    def __init__(self, kube: Kube, namespace: str, name: str, identity: str, duration: int) -> None:
        """Compete for Lease ``namespace/name`` as ``identity``."""
        self.kube, self.namespace, self.name = kube, namespace, name
        self.identity, self.duration = identity, duration
        self.is_leader = False
        # Whether the last attempt got an answer from the API server: readiness
        # (docs/metrics.md) needs the leader state to be known, not to be leader.
        self.known = False
        self._expires = _now()

    @property
    def leading(self) -> bool:
        """Leader and the last renewal is still within the lease duration."""
        return self.is_leader and _now() < self._expires

    async def try_acquire(self) -> bool:
        """One acquire-or-renew attempt; returns whether this instance holds the Lease."""
        now = _now()
        spec: dict[str, Any] = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.duration,
            "renewTime": _fmt(now),
        }
        try:
            lease = await self.kube.read_lease(self.namespace, self.name)
            if lease is None:
                spec["acquireTime"] = _fmt(now)
                await self.kube.create_lease(
                    self.namespace,
                    {
                        "apiVersion": "coordination.k8s.io/v1",
                        "kind": "Lease",
                        "metadata": {"name": self.name},
                        "spec": spec,
                    },
                )
            else:
                held = lease.get("spec") or {}
                holder = held.get("holderIdentity")
                renewed = _parse(held.get("renewTime")) or datetime.min.replace(tzinfo=UTC)
                lasting = timedelta(seconds=int(held.get("leaseDurationSeconds") or self.duration))
                if holder and holder != self.identity and renewed + lasting > now:
                    self.is_leader = False
                    self.known = True
                    return False
                if holder != self.identity:
                    spec["acquireTime"] = _fmt(now)
                    spec["leaseTransitions"] = int(held.get("leaseTransitions") or 0) + 1
                else:
                    spec["acquireTime"] = held.get("acquireTime") or _fmt(now)
                    spec["leaseTransitions"] = held.get("leaseTransitions") or 0
                lease["spec"] = spec
                await self.kube.replace_lease(self.namespace, self.name, lease)
        except Exception as exc:
            # A conflict is an answer (another instance won the race); anything else is not.
            self.known = is_conflict(exc)
            if not self.known:
                log.warning("lease %s/%s: %s", self.namespace, self.name, exc)
            self.is_leader = False
            return False
        if not self.is_leader:
            log.info("acquired lease %s/%s as %s", self.namespace, self.name, self.identity)
        self.is_leader = self.known = True
        self._expires = now + timedelta(seconds=self.duration)
        return True

    async def release(self) -> None:
        """Give the Lease up on a clean shutdown so another instance takes over at once.

        As client-go does: clear the holder and shorten the duration; best effort.
        """
        if not self.is_leader:
            return
        self.is_leader = False
        try:
            lease = await self.kube.read_lease(self.namespace, self.name)
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            lease["spec"]["holderIdentity"] = ""
            lease["spec"]["leaseDurationSeconds"] = 1
            await self.kube.replace_lease(self.namespace, self.name, lease)
            log.info("released lease %s/%s", self.namespace, self.name)
        except Exception as exc:
            log.warning("could not release lease %s/%s: %s", self.namespace, self.name, exc)

    async def run(self, changed: asyncio.Event) -> None:
        """Renew forever; set ``changed`` whenever leadership is gained."""
        while True:
            was = self.is_leader
            await self.try_acquire()
            if self.is_leader and not was:
                changed.set()
            await asyncio.sleep(self.duration / 3 if self.is_leader else self.duration / 5)
