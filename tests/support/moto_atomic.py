"""moto_server, with each DynamoDB request applied atomically.

Real DynamoDB applies every request (a TransactWriteItems included) atomically. moto's
threaded server does not: two concurrent transactions interleave, and a cancelled one
restores a snapshot of the whole table, undoing the other's writes. Serialising DynamoDB
requests restores the guarantee the code under test relies on; S3 stays concurrent.

Its transactions also snapshot the whole table (stream included) once per item written, which
grows with the table and makes a few hundred transactions take minutes and gigabytes. The
rollback here saves only the items a transaction touches, and the stream's length.

Both patches reach into moto's internals, so they are checked against the one moto release
they were written for (MOTO_VERSION, the pin in requirements-dev.txt): any other version, or a
patched function or class that is not where it was, stops the server before it answers, with
the reason on stderr (the tests' moto_server log), instead of running without the patches.

Usage: python moto_atomic.py HOST PORT
"""

import copy
import inspect
import sys
import threading

import moto

# The moto release these patches were written and checked against; requirements-dev.txt pins it.
# On an upgrade: re-read moto's DynamoDBBackend.transact_write_items (how it snapshots and
# restores tables), adjust the patches, then change this and the pin together.
MOTO_VERSION = "5.2.5"


class MotoMismatch(RuntimeError):
    """This moto is not the one the patches fit; running it unpatched would hide the problem."""


if getattr(moto, "__version__", None) != MOTO_VERSION:
    raise MotoMismatch(
        f"tests/support/moto_atomic.py patches moto {MOTO_VERSION} (the version pinned in "
        f"requirements-dev.txt), but {sys.executable} has moto "
        f"{getattr(moto, '__version__', '(unknown version)')} from {moto.__file__}. "
        f"Install the pinned version (`make venv`), or check the patches against this moto "
        f"and update MOTO_VERSION and the pin together."
    )

import moto.dynamodb.models as dynamodb_models  # noqa: E402 - after the version check

from werkzeug.serving import run_simple  # noqa: E402
from moto.moto_server.werkzeug_app import (  # noqa: E402
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)


def _require(found: bool, what: str) -> None:
    if not found:
        raise MotoMismatch(
            f"tests/support/moto_atomic.py: {what} is not in moto {moto.__version__} "
            f"({dynamodb_models.__file__}); the DynamoDB patches do not fit this moto and "
            f"were not applied."
        )


# Everything the patches replace or call, checked before any of it is touched.
_require(getattr(dynamodb_models, "copy", None) is copy,
         "moto.dynamodb.models.copy (the copy module its transactions snapshot tables with)")
_require(inspect.isclass(getattr(dynamodb_models, "Table", None)), "moto.dynamodb.models.Table")
_require(callable(getattr(getattr(dynamodb_models, "Table", None), "get_item", None)),
         "Table.get_item")
_backend = getattr(dynamodb_models, "DynamoDBBackend", None)
_require(inspect.isclass(_backend), "moto.dynamodb.models.DynamoDBBackend")
_require(callable(getattr(_backend, "get_keys_value", None)), "DynamoDBBackend.get_keys_value")
_transact = getattr(_backend, "transact_write_items", None)
_require(callable(_transact), "DynamoDBBackend.transact_write_items")
_require(list(inspect.signature(_transact).parameters) == ["self", "transact_items"],
         "DynamoDBBackend.transact_write_items(self, transact_items)")

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
