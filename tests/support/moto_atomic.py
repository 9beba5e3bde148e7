"""moto_server, with each DynamoDB request applied atomically.

Real DynamoDB applies every request (a TransactWriteItems included) atomically. moto's
threaded server does not: two concurrent transactions interleave, and a cancelled one
restores a snapshot of the whole table, undoing the other's writes. Serialising DynamoDB
requests restores the guarantee the code under test relies on; S3 stays concurrent.

Its transactions also snapshot the whole table (stream included) once per item written, which
grows with the table and makes a few hundred transactions take minutes and gigabytes. The
rollback here saves only the items a transaction touches, and the stream's length.

Usage: python moto_atomic.py HOST PORT
"""

import copy
import sys
import threading

import moto.dynamodb.models as dynamodb_models

from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)

dynamodb_lock = threading.Lock()


class _NoTableSnapshots:
    """Stands in for `copy` inside moto's DynamoDB backend: tables are not deep-copied (the
    rollback below restores what a transaction touched); everything else is copied as before."""

    def __getattr__(self, name):
        return getattr(copy, name)

    @staticmethod
    def deepcopy(value, memo=None):
        if isinstance(value, dynamodb_models.Table):
            return value
        return copy.deepcopy(value, memo)


dynamodb_models.copy = _NoTableSnapshots()
_moto_transact = dynamodb_models.DynamoDBBackend.transact_write_items


def _transact_with_item_rollback(backend, transact_items):
    saved = []
    shards = {}
    for entry in transact_items:
        _, op = next(iter(entry.items()))
        table = backend.tables.get(op.get("TableName"))
        if table is None:
            continue
        key = op.get("Key") or {
            attr: op.get("Item", {}).get(attr)
            for attr in (table.hash_key_attr, table.range_key_attr)
            if attr
        }
        try:
            hash_key, range_key = backend.get_keys_value(table, key)
        except Exception:
            continue
        current = table.get_item(hash_key, range_key)
        saved.append((table, hash_key, range_key, copy.deepcopy(current)))
        if table.stream_shard is not None:
            shards.setdefault(id(table), (table.stream_shard, len(table.stream_shard.items)))
    try:
        return _moto_transact(backend, transact_items)
    except Exception:
        for table, hash_key, range_key, item in reversed(saved):
            if table.range_key_attr:
                if item is None:
                    table.items[hash_key].pop(range_key, None)
                    if not table.items[hash_key]:
                        table.items.pop(hash_key, None)
                else:
                    table.items[hash_key][range_key] = item
            elif item is None:
                table.items.pop(hash_key, None)
            else:
                table.items[hash_key] = item
        for shard, length in shards.values():
            del shard.items[length:]
        raise


dynamodb_models.DynamoDBBackend.transact_write_items = _transact_with_item_rollback
moto_app = DomainDispatcherApplication(create_backend_app)


def app(environ, start_response):
    if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB"):
        with dynamodb_lock:
            # Produce the whole body inside the lock: moto computes it lazily for some calls.
            return [b"".join(moto_app(environ, start_response))]
    return moto_app(environ, start_response)


if __name__ == "__main__":
    host, port = sys.argv[1], int(sys.argv[2])
    run_simple(host, port, app, threaded=True, request_handler=MotoRequestHandler)
