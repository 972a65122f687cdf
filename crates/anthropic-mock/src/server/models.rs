//! `GET /v1/models` and `GET /v1/models/{id}`, paged as the API pages lists.

use http::StatusCode;
use serde_json::{Value, json};

use super::State;
use super::responses::{error_response, json_response};
use super::wire::Resp;

/// The models the mock lists, newest first: (id, display name, created at).
pub(crate) const MODELS: &[(&str, &str, &str)] = &[
    ("claude-opus-4-6", "Claude Opus 4.6", "2026-02-05T00:00:00Z"),
    (
        "claude-sonnet-4-6",
        "Claude Sonnet 4.6",
        "2026-02-17T00:00:00Z",
    ),
    (
        "claude-haiku-4-5",
        "Claude Haiku 4.5",
        "2025-10-15T00:00:00Z",
    ),
    ("claude-opus-4-1", "Claude Opus 4.1", "2025-08-05T00:00:00Z"),
    (
        "claude-sonnet-4-5",
        "Claude Sonnet 4.5",
        "2025-09-29T00:00:00Z",
    ),
    (
        "claude-3-5-haiku-latest",
        "Claude Haiku 3.5",
        "2024-10-22T00:00:00Z",
    ),
];

fn model(m: &(&str, &str, &str)) -> Value {
    json!({"type": "model", "id": m.0, "display_name": m.1, "created_at": m.2})
}

fn param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The answer to a GET under `/v1/models`, or `None` for another path.
pub(super) fn route(state: &State, path: &str, query: Option<&str>) -> Option<Resp> {
    let rid = state.next_id("req_");
    let not_found = |what: &str| {
        error_response(
            StatusCode::NOT_FOUND,
            "not_found_error",
            &format!("model: {what}"),
            None,
            &rid,
        )
    };
    if let Some(id) = path.strip_prefix("/v1/models/") {
        return Some(match MODELS.iter().find(|m| m.0 == id) {
            Some(m) => json_response(StatusCode::OK, &model(m)),
            None => not_found(&id.chars().take(100).collect::<String>()),
        });
    }
    if path != "/v1/models" {
        return None;
    }
    let limit = match param(query, "limit").map(str::parse::<usize>) {
        None => 20,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        Some(_) => {
            return Some(error_response(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "limit: Input should be between 1 and 1000",
                None,
                &rid,
            ));
        }
    };
    let index = |id: &str| MODELS.iter().position(|m| m.0 == id);
    let (from, to) = match (param(query, "after_id"), param(query, "before_id")) {
        (Some(after), _) => match index(after) {
            Some(i) => (i + 1, (i + 1 + limit).min(MODELS.len())),
            None => return Some(not_found(after)),
        },
        (None, Some(before)) => match index(before) {
            Some(i) => (i.saturating_sub(limit), i),
            None => return Some(not_found(before)),
        },
        (None, None) => (0, limit.min(MODELS.len())),
    };
    let page = &MODELS[from..to];
    let has_more = if param(query, "before_id").is_some() && param(query, "after_id").is_none() {
        from > 0
    } else {
        to < MODELS.len()
    };
    Some(json_response(
        StatusCode::OK,
        &json!({
            "data": page.iter().map(model).collect::<Vec<_>>(),
            "has_more": has_more,
            "first_id": page.first().map(|m| m.0),
            "last_id": page.last().map(|m| m.0),
        }),
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_listed_models_are_the_known_ones() {
        let listed: Vec<&str> = super::MODELS.iter().map(|m| m.0).collect();
        assert_eq!(listed, crate::config::MODEL_IDS);
    }
}
