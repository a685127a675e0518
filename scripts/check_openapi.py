#!/usr/bin/env python3
"""Validates recorded HTTP API exchanges against docs/openapi.yaml with openapi-core (a
maintained third-party validator), and checks that they cover the spec: every operation
answered with its success status, and every status code the spec documents seen at least once.

    .venv/bin/python scripts/check_openapi.py docs/openapi.yaml exchanges.json

exchanges.json: [{"method": "GET", "path": "/api/v1/streams", "status": 200,
"content_type": "application/json", "body": "..."}]. Prints one JSON summary line; exit 0 when
every exchange is valid and the spec is covered, 1 otherwise.
"""
import json
import re
import sys

import yaml  # PyYAML, an openapi-core dependency

from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse

spec_path, exchanges_path = sys.argv[1], sys.argv[2]
api = OpenAPI.from_file_path(spec_path)
exchanges = json.load(open(exchanges_path))

raw = yaml.safe_load(open(spec_path))
templates = list(raw["paths"])
problems = []
seen_operations = set()  # (template, method) answered 2xx
seen_statuses = set()
for ex in exchanges:
    req = MockRequest("http://127.0.0.1", ex["method"].lower(), ex["path"])
    resp = MockResponse(
        data=ex["body"].encode(), status_code=ex["status"], content_type=ex["content_type"],
        headers=ex.get("headers", {}),
    )
    try:
        api.validate_response(req, resp)
    except Exception as e:  # every validation error names what did not match
        detail = "; ".join(str(x) for x in getattr(e, "schema_errors", []) or []) or repr(e.__cause__ or "")
        problems.append(f'{ex["method"]} {ex["path"]} -> {ex["status"]}: {e} {detail}'.strip())
        continue
    seen_statuses.add(str(ex["status"]))
    if 200 <= ex["status"] < 300:
        for template in templates:
            if re.fullmatch(re.sub(r"\{[^/}]+\}", "[^/]+", template), ex["path"]):
                seen_operations.add((template, ex["method"].lower()))

documented_operations = set()
documented_statuses = set()
for template, item in raw["paths"].items():
    for method, operation in item.items():
        if method not in ("get", "post", "put", "patch", "delete"):
            continue
        documented_operations.add((template, method))
        for status in operation["responses"]:
            documented_statuses.add(str(status))

for op in sorted(documented_operations - seen_operations):
    problems.append(f"operation never answered with success: {op[1].upper()} {op[0]}")
for status in sorted(documented_statuses - seen_statuses):
    problems.append(f"documented status never seen: {status}")

print(json.dumps({
    "exchanges": len(exchanges),
    "operations": len(documented_operations),
    "operations_exercised": len(seen_operations & documented_operations),
    "statuses": sorted(documented_statuses),
    "problems": problems,
}))
sys.exit(1 if problems else 0)
