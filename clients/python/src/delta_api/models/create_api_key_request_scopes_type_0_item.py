from typing import Literal

CreateApiKeyRequestScopesType0Item = Literal[
    "agents:read",
    "agents:write",
    "bounties:read",
    "bounties:write",
    "budgets:read",
    "budgets:write",
    "runs:read",
    "runs:write",
    "templates:read",
    "templates:write",
    "tenant:admin",
    "usage:read",
]

CREATE_API_KEY_REQUEST_SCOPES_TYPE_0_ITEM_VALUES: set[
    CreateApiKeyRequestScopesType0Item
] = {
    "agents:read",
    "agents:write",
    "bounties:read",
    "bounties:write",
    "budgets:read",
    "budgets:write",
    "runs:read",
    "runs:write",
    "templates:read",
    "templates:write",
    "tenant:admin",
    "usage:read",
}


def check_create_api_key_request_scopes_type_0_item(
    value: str,
) -> CreateApiKeyRequestScopesType0Item:
    if value in CREATE_API_KEY_REQUEST_SCOPES_TYPE_0_ITEM_VALUES:
        return value
    raise TypeError(
        f"Unexpected value {value!r}. Expected one of {CREATE_API_KEY_REQUEST_SCOPES_TYPE_0_ITEM_VALUES!r}"
    )
