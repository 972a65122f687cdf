//! Scripted responses: queued per `x-mock-key` with `POST /_mock/script` (or
//! [`MockServer::script`](crate::MockServer::script)), consumed one per request.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One scripted response. In JSON, the variant is the `kind` field:
///
/// ```json
/// {"key": "test-1", "responses": [
///   {"kind": "status", "status": 529},
///   {"kind": "status", "status": 429, "headers": {"retry-after": "2"}},
///   {"kind": "reset"},
///   {"kind": "ok"}
/// ]}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ScriptEntry {
    /// Normal behaviour for this one request (useful between faults).
    Ok,
    /// An error status with an API-shaped JSON body (unless `body` is given, which is sent
    /// as is, with `content-type: application/json`; a 2xx with a `body` sends that body).
    Status {
        /// The HTTP status.
        status: u16,
        /// `error.type`; defaults to the API's type for the status.
        #[serde(default)]
        error_type: Option<String>,
        /// `error.details.error_code`, e.g. `enforced_spend_limit_reached`.
        #[serde(default)]
        error_code: Option<String>,
        /// `error.message`; defaults to the API's message for the status.
        #[serde(default)]
        message: Option<String>,
        /// Extra response headers (`retry-after`, `retry-after-ms`, `x-should-retry`, ...).
        #[serde(default)]
        headers: BTreeMap<String, String>,
        /// A raw body replacing the JSON error body.
        #[serde(default)]
        body: Option<String>,
    },
    /// An HTML error page with this status, as a proxy or the edge sends it.
    Html {
        /// The HTTP status (502 by default).
        #[serde(default = "default_html_status")]
        status: u16,
    },
    /// The connection is reset (TCP RST) before any byte of the response.
    Reset,
    /// No byte for `ms` milliseconds, then the connection is reset.
    Stall {
        /// How long to stall.
        ms: u64,
    },
    /// Wait `ms` milliseconds, then answer normally.
    Delay {
        /// How long to wait.
        ms: u64,
    },
    /// A 200 that announces its full length, sends about half of the JSON body, then resets.
    CutBody,
    /// A 200 that sends half of the JSON body, stalls `ms` milliseconds, then sends the rest.
    StallBody {
        /// How long the body stalls mid-way.
        ms: u64,
    },
    /// A stream (for a `stream: true` request) that sends `after` events, then
    /// `event: error` with `error_type` (`overloaded_error` by default), then ends.
    StreamError {
        /// Events sent before the error.
        after: usize,
        /// `error.type` of the error event.
        #[serde(default)]
        error_type: Option<String>,
    },
    /// A stream that sends `after` events and ends cleanly without `message_stop`.
    StreamCut {
        /// Events sent before the end.
        after: usize,
    },
    /// A stream that sends `after` events, then sends nothing for `ms` milliseconds, then
    /// the rest.
    StreamStall {
        /// Events sent before the stall.
        after: usize,
        /// How long the stream stalls.
        ms: u64,
    },
}

fn default_html_status() -> u16 {
    502
}

impl ScriptEntry {
    /// A short name for stats and logs.
    pub fn name(&self) -> &'static str {
        match self {
            ScriptEntry::Ok => "ok",
            ScriptEntry::Status { .. } => "status",
            ScriptEntry::Html { .. } => "html",
            ScriptEntry::Reset => "reset",
            ScriptEntry::Stall { .. } => "stall",
            ScriptEntry::Delay { .. } => "delay",
            ScriptEntry::CutBody => "cut_body",
            ScriptEntry::StallBody { .. } => "stall_body",
            ScriptEntry::StreamError { .. } => "stream_error",
            ScriptEntry::StreamCut { .. } => "stream_cut",
            ScriptEntry::StreamStall { .. } => "stream_stall",
        }
    }

    /// A bare status with the API's default error type and message.
    pub fn status(status: u16) -> Self {
        ScriptEntry::Status {
            status,
            error_type: None,
            error_code: None,
            message: None,
            headers: BTreeMap::new(),
            body: None,
        }
    }

    /// A status with an `error.details.error_code`, e.g. a 429 with
    /// `enforced_spend_limit_reached`.
    pub fn status_with_code(status: u16, error_code: &str) -> Self {
        let mut entry = Self::status(status);
        if let ScriptEntry::Status { error_code: c, .. } = &mut entry {
            *c = Some(error_code.to_owned());
        }
        entry
    }

    /// A status with extra headers.
    pub fn status_with_headers<'a>(
        status: u16,
        headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Self {
        let mut entry = Self::status(status);
        if let ScriptEntry::Status { headers: h, .. } = &mut entry {
            h.extend(
                headers
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned())),
            );
        }
        entry
    }
}

/// The body of `POST /_mock/script`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Script {
    /// The `x-mock-key` header value of the requests these responses are for.
    pub key: String,
    /// Responses, consumed in order, one per request.
    pub responses: Vec<ScriptEntry>,
}

/// The API's `error.type` and message for a status.
pub(crate) fn default_error(status: u16) -> (&'static str, &'static str) {
    match status {
        400 => ("invalid_request_error", "Invalid request"),
        401 => ("authentication_error", "invalid x-api-key"),
        402 => (
            "billing_error",
            "Your credit balance is too low to access the Anthropic API.",
        ),
        403 => (
            "permission_error",
            "Your API key does not have permission to use the specified resource.",
        ),
        404 => (
            "not_found_error",
            "The requested resource could not be found.",
        ),
        408 => ("timeout_error", "Request timed out"),
        409 => ("conflict_error", "Conflict"),
        413 => (
            "request_too_large",
            "Request exceeds the maximum allowed number of bytes.",
        ),
        429 => (
            "rate_limit_error",
            "Number of requests has exceeded your rate limit.",
        ),
        504 => ("timeout_error", "Gateway timeout"),
        529 => ("overloaded_error", "Overloaded"),
        _ => ("api_error", "Internal server error"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind() {
        let json = r#"{"key":"k","responses":[
            {"kind":"ok"},
            {"kind":"status","status":429,"error_code":"enforced_spend_limit_reached","headers":{"retry-after":"3"}},
            {"kind":"html"},
            {"kind":"reset"},
            {"kind":"stall","ms":10},
            {"kind":"delay","ms":10},
            {"kind":"cut_body"},
            {"kind":"stall_body","ms":5},
            {"kind":"stream_error","after":3},
            {"kind":"stream_cut","after":2},
            {"kind":"stream_stall","after":2,"ms":9}
        ]}"#;
        let s: Script = serde_json::from_str(json).unwrap();
        assert_eq!(s.responses.len(), 11);
        assert_eq!(s.responses[2], ScriptEntry::Html { status: 502 });
        let names: Vec<_> = s.responses.iter().map(ScriptEntry::name).collect();
        assert_eq!(names[10], "stream_stall");
        assert!(
            serde_json::from_str::<Script>(r#"{"key":"k","responses":[{"kind":"nope"}]}"#).is_err()
        );
    }
}
