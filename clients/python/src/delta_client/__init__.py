"""Delta's platform API from Python.

`Delta` (and `AsyncDelta`) authenticate, add an `Idempotency-Key` to every
mutation and retry it safely, page through lists, raise `DeltaError` with
the request's id, and stream run logs. The operations and models are
generated from the API's OpenAPI document into the package `delta_api`
(`delta_api.api.<tag>.<operation>`, `delta_api.models`; see README.md).
"""

from delta_api.types import UNSET, Unset

from .client import AsyncDelta, Delta, DeltaError, LogEvent

__all__ = ["UNSET", "AsyncDelta", "Delta", "DeltaError", "LogEvent", "Unset"]
