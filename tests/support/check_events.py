"""Validates event details against schemas/events/<detail type>.v1.json (the jsonschema package
of the test virtualenv), independently of the Rust code that wrote them.

Usage: check_events.py SCHEMA_DIR EVENTS_JSON, where EVENTS_JSON is a list of
{"detail_type": "...", "detail": {...}}. Prints one line per problem; exits 1 if any.
"""

import json
import sys
from pathlib import Path

import jsonschema

SLUGS = {"Asset Stored": "asset-stored", "Task Completed": "task-completed",
         "Task Failed": "task-failed", "Task Updated": "task-updated"}


def main() -> int:
    schema_dir, events_file = Path(sys.argv[1]), Path(sys.argv[2])
    events = json.loads(events_file.read_text())
    problems = 0
    for n, event in enumerate(events):
        slug = SLUGS.get(event.get("detail_type"))
        if slug is None:
            print(f"event {n}: unknown detail type {event.get('detail_type')!r}")
            problems += 1
            continue
        schema = json.loads((schema_dir / f"{slug}.v1.json").read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        validator = jsonschema.Draft202012Validator(schema)
        for error in validator.iter_errors(event["detail"]):
            path = "/".join(str(p) for p in error.absolute_path)
            print(f"event {n} ({event['detail_type']}): {path}: {error.message}")
            problems += 1
    print(f"{len(events)} events checked, {problems} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
