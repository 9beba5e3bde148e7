"""Run a command (moto_server) and stop it when our stdin reaches EOF.

The test binary holds the write end of our stdin. When it exits, however it exits,
the pipe closes and the server goes with it, so no emulator outlives a test run.
"""

import os
import subprocess
import sys
import threading

server = subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL)


def stop_at_eof() -> None:
    sys.stdin.buffer.read()
    server.terminate()


threading.Thread(target=stop_at_eof, daemon=True).start()
# Exit with the server, too, so the test side sees a server that failed to start (moto_atomic.py
# refusing a moto it was not written for, say). os._exit: the reader thread above is blocked on
# stdin, and a normal interpreter shutdown would abort on its lock instead of exiting with this.
os._exit(server.wait())
