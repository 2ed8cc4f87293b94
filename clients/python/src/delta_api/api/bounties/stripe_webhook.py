from http import HTTPStatus
from typing import Any

import httpx

from ...client import AuthenticatedClient, Client
from ...types import Response, UNSET
from ... import errors

from ...models.error import Error
from ...models.event_receipt import EventReceipt
from ...models.stripe_webhook_body import StripeWebhookBody
from ...types import Unset


def _get_kwargs(
    *,
    body: StripeWebhookBody,
    stripe_signature: None | str | Unset = UNSET,
    idempotency_key: str | Unset = UNSET,
) -> dict[str, Any]:
    headers: dict[str, Any] = {}
    if not isinstance(stripe_signature, Unset):
        headers["Stripe-Signature"] = stripe_signature

    if not isinstance(idempotency_key, Unset):
        headers["Idempotency-Key"] = idempotency_key

    _kwargs: dict[str, Any] = {
        "method": "post",
        "url": "/v1/payments/stripe/webhook",
    }

    _kwargs["json"] = body.to_dict()

    headers["Content-Type"] = "application/json"

    _kwargs["headers"] = headers
    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> Error | EventReceipt | None:
    if response.status_code == 200:
        response_200 = EventReceipt.from_dict(response.json())

        return response_200

    if response.status_code == 400:
        response_400 = Error.from_dict(response.json())

        return response_400

    if response.status_code == 404:
        response_404 = Error.from_dict(response.json())

        return response_404

    if response.status_code == 409:
        response_409 = Error.from_dict(response.json())

        return response_409

    if response.status_code == 413:
        response_413 = Error.from_dict(response.json())

        return response_413

    if response.status_code == 415:
        response_415 = Error.from_dict(response.json())

        return response_415

    if response.status_code == 422:
        response_422 = Error.from_dict(response.json())

        return response_422

    if response.status_code == 429:
        response_429 = Error.from_dict(response.json())

        return response_429

    if client.raise_on_unexpected_status:
        raise errors.UnexpectedStatus(response.status_code, response.content)
    else:
        return None


def _build_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> Response[Error | EventReceipt]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    *,
    client: AuthenticatedClient | Client,
    body: StripeWebhookBody,
    stripe_signature: None | str | Unset = UNSET,
    idempotency_key: str | Unset = UNSET,
) -> Response[Error | EventReceipt]:
    """Receive a Stripe event (configured as the endpoint of the Stripe
    account whose key is `payments.stripe.secret_key_file`).

    Args:
        stripe_signature (None | str | Unset):
        idempotency_key (str | Unset):
        body (StripeWebhookBody):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Error | EventReceipt]
    """

    kwargs = _get_kwargs(
        body=body,
        stripe_signature=stripe_signature,
        idempotency_key=idempotency_key,
    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    *,
    client: AuthenticatedClient | Client,
    body: StripeWebhookBody,
    stripe_signature: None | str | Unset = UNSET,
    idempotency_key: str | Unset = UNSET,
) -> Error | EventReceipt | None:
    """Receive a Stripe event (configured as the endpoint of the Stripe
    account whose key is `payments.stripe.secret_key_file`).

    Args:
        stripe_signature (None | str | Unset):
        idempotency_key (str | Unset):
        body (StripeWebhookBody):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Error | EventReceipt
    """

    return sync_detailed(
        client=client,
        body=body,
        stripe_signature=stripe_signature,
        idempotency_key=idempotency_key,
    ).parsed


async def asyncio_detailed(
    *,
    client: AuthenticatedClient | Client,
    body: StripeWebhookBody,
    stripe_signature: None | str | Unset = UNSET,
    idempotency_key: str | Unset = UNSET,
) -> Response[Error | EventReceipt]:
    """Receive a Stripe event (configured as the endpoint of the Stripe
    account whose key is `payments.stripe.secret_key_file`).

    Args:
        stripe_signature (None | str | Unset):
        idempotency_key (str | Unset):
        body (StripeWebhookBody):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Error | EventReceipt]
    """

    kwargs = _get_kwargs(
        body=body,
        stripe_signature=stripe_signature,
        idempotency_key=idempotency_key,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    *,
    client: AuthenticatedClient | Client,
    body: StripeWebhookBody,
    stripe_signature: None | str | Unset = UNSET,
    idempotency_key: str | Unset = UNSET,
) -> Error | EventReceipt | None:
    """Receive a Stripe event (configured as the endpoint of the Stripe
    account whose key is `payments.stripe.secret_key_file`).

    Args:
        stripe_signature (None | str | Unset):
        idempotency_key (str | Unset):
        body (StripeWebhookBody):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Error | EventReceipt
    """

    return (
        await asyncio_detailed(
            client=client,
            body=body,
            stripe_signature=stripe_signature,
            idempotency_key=idempotency_key,
        )
    ).parsed
