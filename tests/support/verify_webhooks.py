"""Verifies forwarded webhooks with the standardwebhooks package (an implementation independent
of the Rust crate that signed them).

Usage: verify_webhooks.py CASES_JSON, a list of
  {"secret": "whsec_...", "headers": {...}, "body": "...", "check_time": bool, "expect": bool}
Each case must verify (expect true) or be refused (expect false). check_time false skips the
5-minute timestamp tolerance (the tests move a clock by hours); the signature is always checked.
Prints one line per wrong case; exits 1 if any.
"""

import json
import sys
from datetime import datetime, timezone

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def verify(case) -> bool:
    hook = Webhook(case["secret"])
    if not case.get("check_time", True):
        hook._Webhook__verify_timestamp = (  # noqa: SLF001 - skip only the time window
            lambda header: datetime.fromtimestamp(float(header), tz=timezone.utc))
    try:
        hook.verify(case["body"], case["headers"])
        return True
    except WebhookVerificationError:
        return False


def main() -> int:
    cases = json.loads(open(sys.argv[1]).read())
    wrong = 0
    for n, case in enumerate(cases):
        if verify(case) != case["expect"]:
            wrong += 1
            print(f"case {n}: expected {'valid' if case['expect'] else 'refused'}, "
                  f"id {case['headers'].get('webhook-id')}")
    print(f"{len(cases)} cases, {wrong} wrong")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
