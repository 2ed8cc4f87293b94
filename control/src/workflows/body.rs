//! A workflow definition's body: JSON, or YAML with `Content-Type:
//! application/yaml` (also `application/x-yaml`, `text/yaml`), turned into
//! the same JSON value first, so both are held to the same schema
//! (`deny_unknown_fields`, types) and errors.

use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};
use delta_http::{ApiError, JsonBody, RawBody};
use serde::de::DeserializeOwned;

/// [`JsonBody`], or YAML when the content type says so.
pub struct JsonOrYaml<T>(pub T);

fn yaml_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    ["application/yaml", "application/x-yaml", "text/yaml"]
        .iter()
        .any(|t| essence.eq_ignore_ascii_case(t))
}

/// Parse YAML text into `T` through a JSON value. YAML's parser keeps its
/// default budget (events, depth, aliases: no alias bomb), and the body
/// was already bounded by the router's body limit.
pub fn from_yaml<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let text = std::str::from_utf8(bytes).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_yaml",
            "the body is not UTF-8",
        )
    })?;
    let value: serde_json::Value = serde_saphyr::from_str(text).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_yaml",
            format!("the body is not YAML this API reads: {e}"),
        )
    })?;
    serde_json::from_value(value).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_json",
            format!("the YAML body does not have the expected shape: {e}"),
        )
    })
}

impl<S, T> FromRequest<S> for JsonOrYaml<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if yaml_content_type(req.headers()) {
            let bytes = RawBody::from_request(req, state).await?.0;
            return from_yaml(&bytes).map(Self);
        }
        JsonBody::<T>::from_request(req, state)
            .await
            .map(|JsonBody(v)| Self(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn yaml_reads_as_the_json_it_means_and_bad_yaml_is_bad_input() {
        let v: Value = from_yaml(
            b"name: digest\ndefinition:\n  steps:\n    - id: a\n      agent: fetcher\n      \
              input: {url: {$from: /input/url}}\n      retries: 2\n",
        )
        .expect("yaml");
        assert_eq!(
            v,
            json!({ "name": "digest", "definition": { "steps": [
                { "id": "a", "agent": "fetcher", "input": { "url": { "$from": "/input/url" } },
                  "retries": 2 } ] } })
        );
        for bad in [&b"a: [1, 2"[..], b"\xff\xfe", b"a: b: c"] {
            let e = from_yaml::<Value>(bad).expect_err("not YAML");
            assert_eq!(e.code, "invalid_yaml", "{:?}", String::from_utf8_lossy(bad));
        }
        // An alias bomb is refused by the parser's budget, quickly.
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            bomb.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let e = from_yaml::<Value>(bomb.as_bytes()).expect_err("bomb");
        assert_eq!(e.code, "invalid_yaml");
    }

    #[test]
    fn only_yaml_content_types_are_yaml() {
        let mut headers = HeaderMap::new();
        assert!(!yaml_content_type(&headers));
        for (value, yaml) in [
            ("application/yaml", true),
            ("application/x-yaml; charset=utf-8", true),
            ("Text/YAML", true),
            ("application/json", false),
            ("application/yaml-x", false),
        ] {
            headers.insert(header::CONTENT_TYPE, value.parse().expect("header"));
            assert_eq!(yaml_content_type(&headers), yaml, "{value}");
        }
    }
}
