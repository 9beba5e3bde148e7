"""A pass-through in front of `cargo lambda watch`'s Lambda runtime API that fixes one header.

cargo-lambda 1.9.2 sends `Lambda-Runtime-Deadline-Ms: 600000`, a duration, where Lambda sends
the deadline as epoch milliseconds. A function that budgets its work from the deadline (the
inline copy, the copier) then sees a deadline in 1970 and stops at once. This shim turns such a
relative value into now + value, so local runs see a real deadline ten minutes ahead. The
functions reach it through AWS_LAMBDA_RUNTIME_API (set in the env file, which overrides the
watcher's own value); everything else is forwarded unchanged.
"""

import http.client
import http.server
import threading
import time

# Epoch milliseconds are above this for any date after 2001; durations are far below it.
EPOCH_MS_FLOOR = 1_000_000_000_000


class Shim:
    def __init__(self, upstream_port: int, log_path):
        upstream = upstream_port
        log = open(log_path, "a", buffering=1)

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):  # noqa: A002 - the base class's name
                pass

            def _forward(self):
                body = self._body()
                # One upstream connection per function connection, kept open: the watcher
                # tells function instances apart by their connection.
                if getattr(self, "upstream", None) is None:
                    self.upstream = http.client.HTTPConnection("127.0.0.1", upstream)
                connection = self.upstream
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "transfer-encoding", "content-length")}
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
                log.write(f"{time.strftime('%H:%M:%S')} {self.command} {self.path} "
                          f"{len(body or b'')} B -> {response.status} {len(data)} B\n")
                self.send_response(response.status, response.reason)
                for name, value in response.getheaders():
                    lower = name.lower()
                    if lower in ("transfer-encoding", "content-length", "connection"):
                        continue
                    if lower == "lambda-runtime-deadline-ms" and int(value) < EPOCH_MS_FLOOR:
                        value = str(int(time.time() * 1000) + int(value))
                    self.send_header(name, value)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def finish(self):
                super().finish()
                if getattr(self, "upstream", None) is not None:
                    self.upstream.close()

            def _body(self):
                """The request body, whether sized or chunked (as the runtime client sends)."""
                if "chunked" in self.headers.get("transfer-encoding", "").lower():
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass  # trailers
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                length = int(self.headers.get("content-length") or 0)
                return self.rfile.read(length) if length else None

            do_GET = do_POST = do_PUT = _forward

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # the watcher went away (shutdown): the function's long poll just ends

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
