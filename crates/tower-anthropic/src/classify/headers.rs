//! Reading the API's error headers: `request-id`, `retry-after-ms`, `retry-after`,
//! `x-should-retry`.

use std::time::{Duration, SystemTime};

use http::HeaderMap;
use http::header::{AsHeaderName, HeaderName, RETRY_AFTER};

/// `request-id` (a constant name: a lookup without parsing the name first).
pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("request-id");
const RETRY_AFTER_MS: HeaderName = HeaderName::from_static("retry-after-ms");
const X_SHOULD_RETRY: HeaderName = HeaderName::from_static("x-should-retry");

/// Longest server-directed wait taken as given; larger values are clamped to it (the Python
/// SDK's cap, about 49.7 days).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(4_294_967);

fn header(headers: &HeaderMap, name: impl AsHeaderName) -> Option<&str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// The clock's resolution: a wait shorter than this is no wait.
const TICK: Duration = Duration::from_millis(1);

/// Seconds as a float, only when finite and at least one clock tick once rounded (so
/// `1e-320` is no wait, not a retry at once).
fn positive_secs(secs: f64) -> Option<Duration> {
    if !(secs.is_finite() && secs > 0.0) {
        return None;
    }
    let d = Duration::try_from_secs_f64(secs)
        .unwrap_or(MAX_RETRY_AFTER)
        .min(MAX_RETRY_AFTER);
    (d >= TICK).then_some(d)
}

/// The server-directed wait, in the SDKs' order: `retry-after-ms` (a float of milliseconds),
/// else `retry-after` as a float of seconds, else `retry-after` as an HTTP-date after `now`.
/// Only waits greater than zero count; `retry-after-ms: 0` falls through to `retry-after`.
pub(crate) fn parse_retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    if let Some(ms) = header(headers, RETRY_AFTER_MS).and_then(|v| v.parse::<f64>().ok()) {
        if let Some(d) = positive_secs(ms / 1000.0) {
            return Some(d);
        }
    }
    let value = header(headers, RETRY_AFTER)?;
    if let Ok(secs) = value.parse::<f64>() {
        return positive_secs(secs);
    }
    let date = httpdate::parse_http_date(value).ok()?;
    date.duration_since(now)
        .ok()
        .filter(|d| !d.is_zero())
        .map(|d| d.min(MAX_RETRY_AFTER))
}

/// `x-should-retry: true` or `false`; anything else (including `TRUE`) is ignored, as the
/// SDKs compare the exact lowercase strings.
pub(crate) fn parse_should_retry(headers: &HeaderMap) -> Option<bool> {
    // Exact bytes, as the SDKs compare them: ` true` is not `true`.
    match headers.get(X_SHOULD_RETRY)?.to_str().ok()? {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// The `request-id` header.
pub(crate) fn parse_request_id(headers: &HeaderMap) -> Option<String> {
    request_id(headers).map(str::to_owned)
}

/// The `request-id` header, borrowed.
pub(crate) fn request_id(headers: &HeaderMap) -> Option<&str> {
    header(headers, REQUEST_ID).filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn at(date: &str) -> SystemTime {
        httpdate::parse_http_date(date).unwrap()
    }

    fn with(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    /// The Python SDK's own table (clock at Fri, 29 Sep 2023 16:26:37 GMT); `None` means the
    /// caller falls back to backoff.
    #[test]
    fn python_sdk_retry_after_table() {
        let now = at("Fri, 29 Sep 2023 16:26:37 GMT");
        let table: &[(&str, Option<u64>)] = &[
            ("20", Some(20)),
            ("0", None),
            ("-10", None),
            ("61", Some(61)),
            ("Fri, 29 Sep 2023 16:26:57 GMT", Some(20)),
            ("Fri, 29 Sep 2023 16:26:37 GMT", None),
            ("Fri, 29 Sep 2023 16:27:38 GMT", Some(61)),
            ("nan", None),
            ("", None),
        ];
        for (value, want) in table {
            let got = parse_retry_after(&with(&[("retry-after", value)]), now);
            assert_eq!(got, want.map(Duration::from_secs), "retry-after: {value:?}");
        }
    }

    #[test]
    fn retry_after_ms_first_and_garbage_ignored() {
        let now = SystemTime::now();
        let h = with(&[("retry-after-ms", "1500.5"), ("retry-after", "20")]);
        assert_eq!(
            parse_retry_after(&h, now),
            Some(Duration::from_micros(1_500_500))
        );
        // 0 ms falls through to retry-after (the TypeScript reading).
        let h = with(&[("retry-after-ms", "0"), ("retry-after", "3")]);
        assert_eq!(parse_retry_after(&h, now), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after(&with(&[("retry-after", "0.25")]), now),
            Some(Duration::from_millis(250))
        );
        for garbage in [
            "",
            "nan",
            "-5",
            "20abc",
            "inf",
            "Thu, 01 Jan 1970 00:00:00 GMT",
            "soon",
        ] {
            assert_eq!(
                parse_retry_after(&with(&[("retry-after", garbage)]), now),
                None,
                "{garbage:?}"
            );
            assert_eq!(
                parse_retry_after(&with(&[("retry-after-ms", garbage)]), now),
                None,
                "ms {garbage:?}"
            );
        }
        assert_eq!(
            parse_retry_after(&with(&[("retry-after", "1e300")]), now),
            Some(MAX_RETRY_AFTER)
        );
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_bytes(b"\xff\xfe").unwrap());
        assert_eq!(parse_retry_after(&h, now), None);
    }

    #[test]
    fn should_retry_is_exact() {
        assert_eq!(
            parse_should_retry(&with(&[("x-should-retry", "true")])),
            Some(true)
        );
        assert_eq!(
            parse_should_retry(&with(&[("x-should-retry", "false")])),
            Some(false)
        );
        assert_eq!(
            parse_should_retry(&with(&[("x-should-retry", "TRUE")])),
            None
        );
        assert_eq!(parse_should_retry(&HeaderMap::new()), None);
    }

    #[test]
    fn waits_below_the_clock_tick_and_padded_verdicts_do_not_count() {
        let now = at("Fri, 29 Sep 2023 16:26:37 GMT");
        for tiny in ["1e-320", "0.0000001"] {
            assert_eq!(
                parse_retry_after(&with(&[("retry-after", tiny)]), now),
                None,
                "{tiny}"
            );
            assert_eq!(
                parse_retry_after(&with(&[("retry-after-ms", tiny)]), now),
                None,
                "{tiny}"
            );
        }
        assert_eq!(
            parse_retry_after(&with(&[("retry-after-ms", "1")]), now),
            Some(Duration::from_millis(1))
        );
        assert_eq!(
            parse_should_retry(&with(&[("x-should-retry", " true")])),
            None
        );
        assert_eq!(
            parse_should_retry(&with(&[("x-should-retry", "true ")])),
            None
        );
    }
}
