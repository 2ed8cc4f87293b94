"""Schemathesis hooks for `cargo xtask contract`.

The API's document says what each request may carry; one rule it cannot
state in JSON Schema is that an `Idempotency-Key` names one request: the
same key with a different request is refused (422 `idempotency_key_reused`),
as documented. Hypothesis, left alone, sends the same small key ("0") with
many different requests. A well-formed key is therefore replaced by a fresh
one per request, as a client following the document would send; malformed
keys (negative tests) are left as generated so that their 400 is still
checked.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import schemathesis

_WELL_FORMED = re.compile(r"^[ -~]{1,255}$")


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    headers = case.headers
    if not headers:
        return
    for name in list(headers):
        if name.lower() != "idempotency-key":
            continue
        value = headers[name]
        if isinstance(value, str) and _WELL_FORMED.match(value):
            headers[name] = str(uuid.uuid4())


# `POST /v1/components` takes raw bytes, as application/octet-stream does.
schemathesis.serializer.alias("application/wasm", "application/octet-stream")
