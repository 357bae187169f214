import asyncio

import nats
import pytest

from controller.errors import ConflictError, NotFoundError
from controller.store import JobStore, bucket_for_prefix
from schemas.job import JobSpec

TIMEOUT_S = 10.0


@pytest.fixture
async def js_client(nats_server):
    client = await asyncio.wait_for(nats.connect(nats_server.url), TIMEOUT_S)
    yield client
    await asyncio.wait_for(client.close(), TIMEOUT_S)


async def open_store(client, bucket="jobs-test"):
    return await asyncio.wait_for(JobStore.open(client.jetstream(), bucket), TIMEOUT_S)


def spec(name):
    return JobSpec(name=name, image="busybox")


async def test_created_record_reads_back(js_client, unique_name):
    store = await open_store(js_client)
    name = unique_name("job")

    await asyncio.wait_for(store.create(spec(name), "running", node="n1"), TIMEOUT_S)
    record = await asyncio.wait_for(store.get(name), TIMEOUT_S)

    assert record.name == name
    assert record.desired == "running"
    assert record.node == "n1"
    assert record.state == "pending"
    assert record.created_at > 0


async def test_create_existing_name_conflicts(js_client, unique_name):
    store = await open_store(js_client)
    name = unique_name("job")
    await asyncio.wait_for(store.create(spec(name), "running"), TIMEOUT_S)

    with pytest.raises(ConflictError) as caught:
        await asyncio.wait_for(store.create(spec(name), "stopped"), TIMEOUT_S)

    assert str(caught.value) == (
        f"job {name!r} already exists; remove it first or choose another name"
    )
    record = await asyncio.wait_for(store.get(name), TIMEOUT_S)
    assert record.desired == "running"


async def test_name_reusable_after_delete(js_client, unique_name):
    store = await open_store(js_client)
    name = unique_name("job")
    await asyncio.wait_for(store.create(spec(name), "running"), TIMEOUT_S)
    await asyncio.wait_for(store.delete(name), TIMEOUT_S)

    record = await asyncio.wait_for(store.create(spec(name), "paused"), TIMEOUT_S)

    assert record.desired == "paused"


async def test_missing_job_not_found(js_client, unique_name):
    store = await open_store(js_client)

    with pytest.raises(NotFoundError, match="see `controller jobs`"):
        await asyncio.wait_for(store.get(unique_name("job")), TIMEOUT_S)


async def test_update_changes_given_fields(js_client, unique_name):
    store = await open_store(js_client)
    name = unique_name("job")
    created = await asyncio.wait_for(store.create(spec(name), "running"), TIMEOUT_S)

    await asyncio.wait_for(
        store.update(name, state="running", container_id="abc"), TIMEOUT_S
    )

    record = await asyncio.wait_for(store.get(name), TIMEOUT_S)
    assert record.state == "running"
    assert record.container_id == "abc"
    assert record.desired == "running"
    assert record.updated_at >= created.updated_at


async def test_concurrent_updates_all_land(js_client, unique_name):
    store = await open_store(js_client)
    name = unique_name("job")
    await asyncio.wait_for(store.create(spec(name), "running"), TIMEOUT_S)

    await asyncio.wait_for(
        asyncio.gather(
            store.update(name, state="paused"), store.update(name, message="hello")
        ),
        TIMEOUT_S,
    )

    record = await asyncio.wait_for(store.get(name), TIMEOUT_S)
    assert record.state == "paused"
    assert record.message == "hello"


async def test_list_skips_deleted_jobs(js_client, unique_name):
    store = await open_store(js_client)
    kept, deleted = unique_name("b"), unique_name("a")
    for name in (kept, deleted):
        await asyncio.wait_for(store.create(spec(name), "running"), TIMEOUT_S)
    await asyncio.wait_for(store.delete(deleted), TIMEOUT_S)

    records = await asyncio.wait_for(store.list(), TIMEOUT_S)

    assert [record.name for record in records] == [kept]


async def test_list_of_empty_bucket(js_client):
    store = await open_store(js_client)

    records = await asyncio.wait_for(store.list(), TIMEOUT_S)

    assert records == []


async def test_records_survive_server_restart(nats_server, unique_name):
    name = unique_name("job")
    client = await asyncio.wait_for(nats.connect(nats_server.url), TIMEOUT_S)
    store = await open_store(client)
    await asyncio.wait_for(store.create(spec(name), "paused"), TIMEOUT_S)
    await asyncio.wait_for(client.close(), TIMEOUT_S)
    nats_server.stop()
    nats_server.start()

    client = await asyncio.wait_for(nats.connect(nats_server.url), TIMEOUT_S)
    store = await open_store(client)
    record = await asyncio.wait_for(store.get(name), TIMEOUT_S)
    await asyncio.wait_for(client.close(), TIMEOUT_S)

    assert record.desired == "paused"


@pytest.mark.parametrize(
    ("prefix", "bucket"),
    [("dsched", "dsched-jobs"), ("lab.dsched", "lab-dsched-jobs")],
)
def test_bucket_follows_prefix(prefix, bucket):
    assert bucket_for_prefix(prefix) == bucket


async def test_prefixes_keep_separate_jobs(js_client, unique_name):
    name = unique_name("job")
    first = await open_store(js_client, bucket_for_prefix("lab-a"))
    second = await open_store(js_client, bucket_for_prefix("lab-b"))

    await asyncio.wait_for(first.create(spec(name), "running"), TIMEOUT_S)

    with pytest.raises(NotFoundError):
        await asyncio.wait_for(second.get(name), TIMEOUT_S)


async def test_update_on_stale_base_retries(js_client, unique_name):
    store = await open_store(js_client)
    name = unique_name("job")
    await asyncio.wait_for(store.create(spec(name), "running"), TIMEOUT_S)
    stale = await asyncio.wait_for(store.entry(name), TIMEOUT_S)
    await asyncio.wait_for(store.update(name, node="n1"), TIMEOUT_S)

    updated = await asyncio.wait_for(
        store.update(name, base=stale, desired="paused"), TIMEOUT_S
    )

    assert updated.node == "n1"
    assert updated.desired == "paused"


async def test_removed_job_is_not_found(js_client, unique_name):
    store = await open_store(js_client)
    name = unique_name("job")
    await asyncio.wait_for(store.create(spec(name), "running"), TIMEOUT_S)

    await asyncio.wait_for(store.delete(name), TIMEOUT_S)

    with pytest.raises(NotFoundError, match=f"job '{name}' not found"):
        await asyncio.wait_for(store.get(name), TIMEOUT_S)


async def test_list_returns_every_record(js_client, unique_name):
    store = await open_store(js_client)
    names = sorted(unique_name("job") for _ in range(40))
    for name in names:
        await asyncio.wait_for(store.create(spec(name), "running"), TIMEOUT_S)

    records = await asyncio.wait_for(store.list(), TIMEOUT_S)

    assert [record.name for record in records] == names
