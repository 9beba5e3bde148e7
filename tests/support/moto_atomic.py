"""moto_server, with each DynamoDB request applied atomically.

Real DynamoDB applies every request (a TransactWriteItems included) atomically. moto's
threaded server does not: two concurrent transactions interleave, and a cancelled one
restores a snapshot of the whole table, undoing the other's writes. Serialising DynamoDB
requests restores the guarantee the code under test relies on; S3 stays concurrent.

Usage: python moto_atomic.py HOST PORT
"""

import sys
import threading

from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)

dynamodb_lock = threading.Lock()
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
