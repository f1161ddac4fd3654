"""One of two processes writing the ledger at once, as two proxy replicas on one Postgres do.

Started by `bench.ledger_bench` (twice, with a lease each of the same hot user), it opens its
connections, warms up, prints `ready`, then runs one measurement per line it reads on stdin
(`leased` or `ceiling`) and answers each with the operations per second it completed. Its
parent sends each line to both processes at once, so the two always run the same kind side
by side; `quit` ends it.

    python -m bench.ledger_processes DATABASE_URL USER_ID LEASE_ID BATCH_CALLS CONCURRENCY DURATION_S WARMUP_S
"""

from __future__ import annotations

import asyncio
import json
import sys

from psycopg import AsyncConnection

from bench.ledger_operations import ceiling_update, leased_batch, ops_per_s


async def serve(
    url: str, user_id: str, lease_id: str, batch_calls: int, concurrency: int, duration_s: float, warmup_s: float
) -> None:
    operations = {"leased": leased_batch([user_id], {user_id: lease_id}, batch_calls), "ceiling": ceiling_update(1)}
    connections = [await AsyncConnection.connect(url, autocommit=True) for _ in range(concurrency)]
    try:
        for operation in operations.values():
            await ops_per_s(connections, operation, warmup_s)
        print("ready", flush=True)
        reader = asyncio.StreamReader()
        await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while (kind := (await reader.readline()).decode().strip()) in operations:
            measured = await ops_per_s(connections, operations[kind], duration_s)
            print(json.dumps({"kind": kind, "ops_per_s": measured}), flush=True)
    finally:
        for connection in connections:
            await connection.close()


def main(argv: list[str]) -> None:
    url, user_id, lease_id, batch_calls, concurrency, duration_s, warmup_s = argv
    asyncio.run(serve(url, user_id, lease_id, int(batch_calls), int(concurrency), float(duration_s), float(warmup_s)))


if __name__ == "__main__":
    main(sys.argv[1:])
