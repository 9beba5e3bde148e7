#!/usr/bin/env python3
"""Checks tests/data/corpus/malformed.json against the receiver's 400 rules, and events/*.json bodies
as a positive control (each must be accepted by the same rules). Usage: python3 tests/data/corpus/check.py"""
import base64, json, pathlib, re, sys, urllib.parse

ROOT = pathlib.Path(__file__).resolve().parents[3]
ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
ID_FIELDS = ("task_id", "conversion_id", "conversion_id_1", "conversion_id_2")
URL_FIELDS = ("audio_url", "audio_url_wav", "conversion_path", "conversion_path_wav",
              "image_path", "album_cover_path", "output_file_path")
STEM_FIELDS = ("audio_url", "audio_url_wav")

def depth(v):
    if isinstance(v, dict): return 1 + max(map(depth, v.values()), default=0)
    if isinstance(v, list): return 1 + max(map(depth, v), default=0)
    return 0

def bad_const(c): raise ValueError(f"{c} is not JSON")

def verdict(content_type, body):
    """None when the rules accept the body, else the reason for a 400."""
    if not body.strip(): return "empty body"
    if content_type == "application/x-www-form-urlencoded":
        value = dict(urllib.parse.parse_qsl(body, keep_blank_values=True))
    else:
        try: value = json.loads(body, parse_constant=bad_const)
        except ValueError as e: return f"not JSON: {e}"
        if depth(value) > 128: return "nested deeper than 128"
    if not isinstance(value, dict): return "top level is not an object"
    present = {k: v for k, v in value.items() if k in ID_FIELDS and v not in (None, "")}
    if "task_id" not in present and "conversion_id" not in present: return "no task_id and no conversion_id"
    for k, v in present.items():
        if isinstance(v, int) and not isinstance(v, bool) and v >= 0: v = str(v)
        if not (isinstance(v, str) and ID.fullmatch(v)): return f"invalid {k}"
    for k in URL_FIELDS:
        v = value.get(k)
        if k in STEM_FIELDS and isinstance(v, str):
            try: v = json.loads(v) if isinstance(json.loads(v), dict) else v
            except ValueError: pass
        if v is None or isinstance(v, str): continue
        if not (k in STEM_FIELDS and isinstance(v, dict)): return f"{k} has a wrong type"
        for stem, url in v.items():
            if not (ID.fullmatch(stem) and isinstance(url, str)): return f"bad stem in {k}"
    return None

def main():
    errors = []
    cases = json.loads((ROOT / "tests/data/corpus/malformed.json").read_text())
    if not isinstance(cases, list) or len(cases) < 60: errors.append("need a JSON array of >= 60 cases")
    names = [c["name"] for c in cases]
    if len(set(names)) != len(names): errors.append("duplicate names")
    for c in cases:
        if set(c) != {"name", "content_type", "body", "why"}: errors.append(f"{c['name']}: keys {sorted(c)}")
        if verdict(c["content_type"], c["body"]) is None: errors.append(f"{c['name']}: the rules accept it")
    for path in sorted((ROOT / "events").glob("*.json")):
        ev = json.loads(path.read_text())
        if not ev.get("body"): continue
        body = base64.b64decode(ev["body"]).decode() if ev.get("isBase64Encoded") else ev["body"]
        ct = {k.lower(): v for k, v in ev.get("headers", {}).items()}.get("content-type")
        if (why := verdict(ct, body)) is not None: errors.append(f"{path.name}: rejected ({why})")
    print("\n".join(errors) or f"ok: {len(cases)} malformed cases rejected, event bodies accepted")
    sys.exit(1 if errors else 0)

if __name__ == "__main__":
    main()
