"""The pinned local DynamoDB (ministack) for `infra/dev`, losing nothing it
acknowledged when it or the machine crashes.

ministack saves its state only when it stops gracefully (PERSIST_STATE=1),
so a `kill -9` lost every write since it started. This launcher runs the
same server with one change: after each successful write request, and before
the answer goes out, the DynamoDB state is written to STATE_DIR (a temporary
file, fsync, rename, fsync of the folder), the way ministack writes it at
shutdown, so the next start loads it. It costs a copy of the state per
write: right for a development database, not for a large one.

Run with the environment ministack reads (GATEWAY_PORT, BIND_HOST, SERVICES,
STATE_DIR) plus PERSIST_STATE=1, from the venv that holds ministack.
"""

import os
import sys

os.environ["PERSIST_STATE"] = "1"

from ministack.core import persistence  # noqa: E402
from ministack.services import dynamodb  # noqa: E402

WRITES = {
    "CreateTable", "DeleteTable", "UpdateTable", "UpdateTimeToLive",
    "PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems",
    "ExecuteStatement", "BatchExecuteStatement", "ExecuteTransaction",
    "TagResource", "UntagResource", "UpdateContinuousBackups",
}

_handle = dynamodb.handle_request


def _fsync_folder(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_now():
    """ministack's own save (temporary file, rename), then to disk for real."""
    persistence.save_state("dynamodb", dynamodb.get_state())
    path = os.path.join(persistence.STATE_DIR, "dynamodb.json")
    with open(path, "rb") as f:
        os.fsync(f.fileno())
    _fsync_folder(persistence.STATE_DIR)


async def durable_handle_request(method, path, headers, body, query_params):
    answer = await _handle(method, path, headers, body, query_params)
    action = headers.get("x-amz-target", "").rsplit(".", 1)[-1]
    status = answer[0] if isinstance(answer, tuple) and answer else 500
    if action in WRITES and isinstance(status, int) and status < 300:
        save_now()
    return answer


dynamodb.handle_request = durable_handle_request

if __name__ == "__main__":
    from ministack.app import main

    sys.argv[0] = "ministack"
    sys.exit(main())
