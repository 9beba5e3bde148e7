"""`make run`: the local stack, left running for you to send callbacks to; Ctrl-C stops it all.

Usage: python scripts/run.py [--mode inline|stream] [--release] [--port 9000]
"""

import argparse
import signal
import sys

import local_stack
from local_stack import CALLBACKS, Stack, log


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("inline", "stream"), default="inline")
    parser.add_argument("--release", action="store_true")
    parser.add_argument("--key-prefix", default="")
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args()
    # The functions' logs go to this terminal; moto's to .local/logs/moto.log.
    stack = Stack("run", mode=args.mode, lambda_port=args.port, release=args.release, quiet=False,
                  key_prefix=args.key_prefix)
    try:
        stack.start()
        bodies = stack.state.relative_to(local_stack.ROOT) / "callbacks"
        print(f"""
Running (COPY_MODE={args.mode}). The webhook URL:
  {stack.webhook_url}

Post a sample callback (its file URLs point at the local stand-in for MusicGPT):
  curl -sS -H 'content-type: application/json' --data-binary @{bodies}/{CALLBACKS[2]}.json \\
    {stack.webhook_url}

The other callbacks of the task are in {bodies}/ ({', '.join(CALLBACKS)}).
Events go to the bus {local_stack.BUS} (a rule sends them to the SQS queue {local_stack.QUEUE})
and, signed, to a local webhook. The read API (bearer token of READ_TOKENS):
  curl -sS -H 'authorization: Bearer {local_stack.READ_TOKEN}' {stack.tasks_url}/{local_stack.TASK}
  curl -sS -H 'authorization: Bearer {local_stack.READ_TOKEN}' '{stack.tasks_url}?status=COMPLETED'
See the table and the bucket:  make show
Emulator for your own tools:   AWS_ENDPOINT_URL={stack.endpoint} AWS_ACCESS_KEY_ID=testing \\
                               AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
Ctrl-C stops everything.
""", flush=True)
        signal.pause()
        return 0
    finally:
        stack.stop()
        log("stopped everything")


if __name__ == "__main__":
    sys.exit(local_stack.run_stack(main))
