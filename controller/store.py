"""The job store: one record per job in a JetStream key-value bucket.

The bucket outlives the controller process, so a restarted controller finds
every job with its desired state, node and container.
"""

import logging
import time
from collections.abc import Callable

import msgspec
import nats.js.errors
from nats.js.api import KeyValueConfig
from nats.js.client import JetStreamContext
from nats.js.kv import KeyValue

from controller.codec import decode
from controller.connection import nats_errors
from controller.errors import ConflictError, NotFoundError
from controller.retries import until_jetstream_ready
from schemas.job import DesiredState, JobSpec
from schemas.messages import ContainerInfo, JobView, PublishedPort, encode

logger = logging.getLogger(__name__)

DEFAULT_BUCKET = "dsched-jobs"


def bucket_for_prefix(prefix: str) -> str:
    """Return the job bucket of a subject prefix: `dsched` keeps `dsched-jobs`.

    Controllers on different prefixes must not share job records, and a
    bucket name may not contain dots.
    """
    return f"{prefix.replace('.', '-')}-jobs"


UPDATE_ATTEMPTS = 5


class JobRecord(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=False):
    """A job as stored: its spec, desired state and what was last observed."""

    spec: JobSpec
    desired: DesiredState
    state: str = "pending"
    node: str | None = None
    container_id: str | None = None
    ports: list[PublishedPort] = []
    message: str = ""
    created_at: float = 0.0
    updated_at: float = 0.0
    # The name the job was submitted under, for a copy of a job with a count.
    group: str | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    def view(self) -> JobView:
        return JobView(
            name=self.name,
            desired=self.desired,
            state=self.state,
            node=self.node,
            container_id=self.container_id,
            image=self.spec.image,
            ports=self.ports,
            message=self.message,
            created_at=self.created_at,
            updated_at=self.updated_at,
            stop_grace_s=self.spec.stop_grace_s(),
            group=self.group,
        )


_record_decoder = msgspec.json.Decoder(JobRecord)


def observed_fields(container: ContainerInfo) -> dict:
    """Return the record fields that a container reported by a node sets."""
    return {
        "state": container.state,
        "container_id": container.id,
        "ports": container.ports,
    }


class JobStore:
    """Job records keyed by job name; `create` and `update` are atomic."""

    def __init__(
        self,
        kv: KeyValue,
        js: JetStreamContext,
        bucket: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._kv = kv
        self._js = js
        self._bucket = bucket
        self._clock = clock

    @classmethod
    async def open(cls, js: JetStreamContext, bucket: str = DEFAULT_BUCKET):
        """Open the bucket, creating it with history 1 if it does not exist.

        Retries while JetStream is not ready, as on a server that just started.
        """
        action = f"open key-value bucket {bucket!r}"
        async for attempt in until_jetstream_ready(action):
            with attempt, nats_errors(action):
                kv = await cls._open_or_create(js, bucket)
        return cls(kv, js, bucket)

    @staticmethod
    async def _open_or_create(js: JetStreamContext, bucket: str) -> KeyValue:
        try:
            return await js.key_value(bucket)
        except nats.js.errors.BucketNotFoundError:
            logger.info("creating key-value bucket %r for job records", bucket)
            return await js.create_key_value(KeyValueConfig(bucket=bucket, history=1))

    async def create(self, spec: JobSpec, desired: DesiredState, **fields):
        """Store a new record, or raise ConflictError if the job name is taken."""
        now = self._clock()
        record = JobRecord(
            spec=spec, desired=desired, created_at=now, updated_at=now, **fields
        )
        with nats_errors(f"store job {spec.name!r}"):
            try:
                await self._kv.create(spec.name, encode(record))
            except nats.js.errors.KeyWrongLastSequenceError as exc:
                raise ConflictError(
                    f"job {spec.name!r} already exists; remove it first or "
                    "choose another name"
                ) from exc
        return record

    async def get(self, name: str) -> JobRecord:
        """Return the job's record, or raise NotFoundError."""
        record, _ = await self.entry(name)
        return record

    async def update(
        self, name: str, base: tuple[JobRecord, int] | None = None, **changes
    ) -> JobRecord:
        """Apply `changes` to the current record, retrying if another writer won.

        `base` is a (record, revision) pair from `entry`; when given, the first
        attempt writes on it without reading the record again.
        """
        for _ in range(UPDATE_ATTEMPTS):
            record, revision = base or await self.entry(name)
            base = None
            changed = msgspec.structs.replace(
                record, updated_at=self._clock(), **changes
            )
            with nats_errors(f"update job {name!r}"):
                try:
                    await self._kv.update(name, encode(changed), last=revision)
                    return changed
                except nats.js.errors.KeyWrongLastSequenceError:
                    logger.debug("job %s changed while updating it, retrying", name)
        raise ConflictError(
            f"job {name!r} kept changing during {UPDATE_ATTEMPTS} update attempts; "
            "retry the command"
        )

    async def delete(self, name: str) -> None:
        with nats_errors(f"delete job {name!r}"):
            await self._kv.purge(name)

    async def list(self) -> list[JobRecord]:
        """Return every job record, sorted by name.

        The keys come from the bucket's stream (`KV_<bucket>`, one subject
        `$KV.<bucket>.<key>` per key), then each record is read. A key
        watcher is not used: nats-py 2.16 may end its initial listing before
        all keys arrived when the client is slow, and a job missing from a
        listing looks like a removed job.
        """
        records = []
        for name in await self._keys():
            try:
                records.append(await self.get(name))
            except NotFoundError:
                continue  # removed since the keys were listed

        return records

    async def _keys(self) -> tuple[str, ...]:
        prefix = f"$KV.{self._bucket}."
        with nats_errors("list job records"):
            info = await self._js.stream_info(
                f"KV_{self._bucket}", subjects_filter=f"{prefix}>"
            )
        # NOTE: nats-server returns at most 100,000 subjects per stream info
        # request; a larger fleet needs paging with the request's offset.
        subjects = info.state.subjects or {}

        return tuple(sorted(subject.removeprefix(prefix) for subject in subjects))

    async def entry(self, name: str) -> tuple[JobRecord, int]:
        """Return the job's record and its revision, or raise NotFoundError."""
        with nats_errors(f"read job {name!r}"):
            try:
                entry = await self._kv.get(name)
            except nats.js.errors.KeyNotFoundError as exc:
                raise NotFoundError(
                    f"job {name!r} not found; see `controller jobs`"
                ) from exc
        return self._decode(name, entry.value), entry.revision

    @staticmethod
    def _decode(name: str, value: bytes | None) -> JobRecord:
        return decode(_record_decoder, value or b"", f"stored record of job {name!r}")
