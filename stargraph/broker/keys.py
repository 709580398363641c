"""Every Redis key name of the queue and of the backends' slots, from one configurable prefix.

All names carry the same hash tag, `{prefix}`, so every key a script touches hashes to one
slot and the scripts also run on Redis Cluster.
"""

from __future__ import annotations

from dataclasses import dataclass


def tagged(prefix: str, name: str) -> str:
    """`{prefix}:name`: a key in the prefix's hash slot."""
    return f"{{{prefix}}}:{name}"


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """The queue's keys; `scripted` is the KEYS list every queue script receives, in order."""

    order: str  # ZSET, score 0: waiting jobs by fixed-width member (band, lap, slot, job)
    chains: str  # ZSET, score 0: "band:user:" + order member, one user's jobs in one band
    jobs: str  # HASH job -> "state|user|seq|member" (waiting, leased or parked)
    leases: str  # ZSET job by lease deadline (ms, server clock)
    tokens: str  # HASH job -> lease token
    parked: str  # ZSET job by ack time (ms): acknowledged, kept to requeue at the old place
    cursor: str  # HASH band -> place of the last job claimed in that band
    served: str  # HASH "band:user:" -> place of that user's last claimed job in that band
    seq: str  # STRING: arrival and slot counter
    channel: str  # pub/sub channel (not a key): "there may be work"
    _announced: str  # prefix of `announced(job)`

    @classmethod
    def for_prefix(cls, prefix: str) -> QueueKeys:
        names = ("order", "chains", "jobs", "leases", "tokens", "parked", "cursor", "served")
        parts = {name: tagged(prefix, f"queue:{name}") for name in names}
        return cls(
            **parts,
            seq=tagged(prefix, "queue:seq"),
            channel=tagged(prefix, "queue:work"),
            _announced=tagged(prefix, "queue:announced:"),
        )

    def announced(self, job_id: str) -> str:
        """STRING, for a minute: the job's last requeue or move announcement (its event)."""
        return self._announced + job_id

    @property
    def scripted(self) -> list[str]:
        return [
            self.order,
            self.chains,
            self.jobs,
            self.leases,
            self.tokens,
            self.parked,
            self.cursor,
            self.served,
            self.seq,
        ]

    @property
    def all(self) -> list[str]:
        """Every key the queue writes (to empty it, e.g. in tests and benchmarks)."""
        return self.scripted


@dataclass(frozen=True, slots=True)
class SlotKeys:
    """The in-flight slots' keys, in the queue's hash slot, so that one script can claim a job
    and reserve its slot."""

    version: str  # STRING: counter; every slot operation takes the next number
    channel: str  # pub/sub channel (not a key): "<count> <version> <backend>" after a release
    withdrawn: str  # pub/sub channel: "<job id>" of a job cancelled before it reached its backend
    _per_backend: str

    @classmethod
    def for_prefix(cls, prefix: str) -> SlotKeys:
        return cls(
            version=tagged(prefix, "slots:version"),
            channel=tagged(prefix, "slots:freed"),
            withdrawn=tagged(prefix, "slots:withdrawn"),
            _per_backend=tagged(prefix, "slots:of:"),
        )

    def of(self, backend: str) -> str:
        """ZSET: the ids of the jobs holding a slot on `backend`."""
        return self._per_backend + backend
