//! The OpenAPI document states every answer an operation can give, each
//! error with the one envelope, so that generated clients and contract
//! testers (schemathesis runs in CI) can rely on it.
//!
//! Handlers declare their successes and the refusals particular to them.
//! The answers that come from layers and extractors shared by every route
//! (a malformed request, missing credentials, a rate limit, an oversized or
//! mistyped body) are added here, once, from what each operation has: its
//! parameters, its body, its security requirement. Doing it per handler
//! was tried and drifted: outside testing found 75 undeclared statuses.

use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{ArrayItems, Schema};
use utoipa::openapi::{Content, OpenApi, Ref, RefOr, Response};

/// The name of the error envelope's schema in `components.schemas`.
pub const ERROR_SCHEMA: &str = "Error";

/// The body of every error answer (`delta_http::ApiError` renders it).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Only its schema is used: ApiError writes the JSON.
pub struct ErrorBody {
    /// Stable machine-readable code (`not_found`, `rate_limited`, ...).
    code: String,
    /// Human-readable account.
    message: String,
    /// The request's id, also in the `x-request-id` header.
    request_id: String,
    /// Structured extras (e.g. `limit` of a rate limit).
    details: Option<serde_json::Value>,
}

/// Add the shared answers to every operation and the envelope to every
/// error answer.
pub fn document(openapi: &mut OpenApi) {
    let components = openapi.components.get_or_insert_with(Default::default);
    components.schemas.insert(
        ERROR_SCHEMA.to_owned(),
        <ErrorBody as utoipa::PartialSchema>::schema(),
    );
    for (path, item) in openapi.paths.paths.iter_mut() {
        let has_path_params = path.contains('{');
        for (mutating, op) in [
            (false, &mut item.get),
            (true, &mut item.post),
            (true, &mut item.put),
            (true, &mut item.patch),
            (true, &mut item.delete),
        ] {
            if let Some(op) = op.as_mut() {
                complete(op, mutating, has_path_params);
            }
        }
    }
}

/// State the values that come from configuration or constants as enums,
/// which derive attributes cannot: the tiers of `[tiers]` in
/// `PUT /v1/budget/users/{user_id}`, the scopes of a new API key.
pub fn constrain(openapi: &mut OpenApi, tiers: &[&str], scopes: &[&str]) {
    let Some(components) = openapi.components.as_mut() else {
        return;
    };
    let mut set = |schema: &str, property: &str, values: &[&str]| {
        let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(schema) else {
            return;
        };
        let values = Some(values.iter().map(|v| serde_json::json!(v)).collect());
        match object.properties.get_mut(property) {
            Some(RefOr::T(Schema::Object(p))) => p.enum_values = values,
            Some(RefOr::T(Schema::Array(array))) => {
                if let ArrayItems::RefOrSchema(items) = &mut array.items
                    && let RefOr::T(Schema::Object(item)) = items.as_mut()
                {
                    item.enum_values = values;
                }
            }
            _ => {}
        }
    };
    set("SetTier", "tier", tiers);
    set("CreateApiKeyRequest", "scopes", scopes);
}

fn complete(op: &mut Operation, mutating: bool, has_path_params: bool) {
    let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
    // Before X-App-ID joins the parameters: only the operation's own count.
    let has_query = op.parameters.as_ref().is_some_and(|p| !p.is_empty());
    if secured {
        add_app_id(op);
    }
    let json_body = op
        .request_body
        .as_ref()
        .is_some_and(|b| b.content.keys().any(|k| k.contains("json")));
    let any_body = op.request_body.is_some();
    let mut shared: Vec<(&str, &str)> = Vec::new();
    if mutating || has_query || has_path_params || any_body || secured {
        shared.push((
            "400",
            "Malformed request: a query, path or header value that does not parse \
             (`bad_request`, `invalid_idempotency_key`, `invalid_app_id`), or a body \
             that is not JSON",
        ));
    }
    if secured {
        shared.push((
            "401",
            "No, an unknown, expired or revoked credential (`unauthorized`)",
        ));
        shared.push((
            "403",
            "The credential's role or scope does not allow this (`forbidden`), or \
             X-App-ID names a tenant it may not act in (`app_not_allowed`)",
        ));
    }
    if has_path_params {
        shared.push((
            "404",
            "No such resource in the caller's tenant (`not_found`)",
        ));
    }
    if any_body {
        shared.push((
            "413",
            "The body is larger than the route's limit (`payload_too_large`)",
        ));
        shared.push((
            "415",
            "The body's Content-Type is not one this operation takes (`unsupported_media_type`)",
        ));
    }
    if json_body || mutating || has_query {
        shared.push((
            "422",
            "The body is JSON of the wrong shape or values, or a query value outside \
             its documented range or pattern (`invalid`), or an Idempotency-Key \
             reused for another request (`idempotency_key_reused`)",
        ));
    }
    if mutating {
        shared.push((
            "409",
            "A request with this Idempotency-Key is still running (`idempotency_key_in_flight`)",
        ));
    }
    shared.push((
        "429",
        "Rate limited (`rate_limited`, with Retry-After); anonymous routes are limited per address",
    ));
    for (status, description) in shared {
        op.responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| RefOr::T(Response::new(description)));
    }
    for (status, response) in op.responses.responses.iter_mut() {
        let is_error = status.starts_with('4') || status.starts_with('5');
        if let (true, RefOr::T(response)) = (is_error, response)
            && response.content.is_empty()
        {
            response.content.insert(
                "application/json".to_owned(),
                Content::new(Some(Ref::from_schema_name(ERROR_SCHEMA))),
            );
        }
    }
}

/// `X-App-ID` (seed 004) on every authenticated operation.
fn add_app_id(op: &mut Operation) {
    use utoipa::openapi::Required;
    use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    let params = op.parameters.get_or_insert_with(Vec::new);
    if params
        .iter()
        .any(|p| p.name.eq_ignore_ascii_case("x-app-id"))
    {
        return;
    }
    params.push(
        ParameterBuilder::new()
            .name("X-App-ID")
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(
                "The tenant (app) to act in: a session may name any tenant its user is a \
                 member of (default: the one of its login), an API key only its own; any \
                 other is 403 `app_not_allowed`, malformed 400 `invalid_app_id`",
            ))
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some("^[A-Za-z0-9_-]{1,128}$")),
            ))
            .build(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_states_its_shared_answers_with_the_envelope() {
        let (_, mut openapi) = crate::app::api_routes().split_for_parts();
        document(&mut openapi);
        let login = openapi.paths.paths["/v1/auth/login"]
            .post
            .as_ref()
            .expect("login");
        for status in ["400", "413", "415", "422", "429"] {
            assert!(login.responses.responses.contains_key(status), "{status}");
        }
        let agent = openapi.paths.paths["/v1/agents/{id}"]
            .get
            .as_ref()
            .expect("get agent");
        for status in ["401", "403", "404", "429"] {
            let Some(RefOr::T(response)) = agent.responses.responses.get(status) else {
                panic!("{status} missing");
            };
            assert!(
                response.content.contains_key("application/json"),
                "{status} without the envelope"
            );
        }
        assert!(
            openapi
                .components
                .as_ref()
                .is_some_and(|c| c.schemas.contains_key(ERROR_SCHEMA))
        );
        constrain(&mut openapi, &["free", "team"], crate::auth::SCOPES);
        let json = serde_json::to_value(&openapi).expect("json");
        let schemas = &json["components"]["schemas"];
        for schema in ["RegisterRequest", "AddMemberRequest"] {
            assert_eq!(
                schemas[schema]["properties"]["email"]["pattern"],
                crate::identity::EMAIL_PATTERN,
                "{schema}'s email pattern is not the one normalise_email follows"
            );
        }
        assert_eq!(
            schemas["SetTier"]["properties"]["tier"]["enum"],
            serde_json::json!(["free", "team"])
        );
        assert_eq!(
            schemas["CreateApiKeyRequest"]["properties"]["scopes"]["items"]["enum"],
            serde_json::json!(crate::auth::SCOPES)
        );
    }
}
