//! The typed service: a [`CreateMessageRequest`] in, an [`ApiResponse<Message>`] out.

use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Limited};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tower::Service;

use super::types::{CountTokensRequest, CreateMessageRequest, Message, TokenCount};
use crate::classify;
use crate::error::{BoxError, DecodeError, Error, InvalidRequestError};
use crate::rate_limit::RateLimitHeaders;
use crate::transport::{Endpoint, RequestBody};

/// Largest successful response body read by default (64 MiB).
pub const DEFAULT_MAX_RESPONSE_BODY: usize = 64 * 1024 * 1024;

/// How many attempts a call took; set as a response extension by the retry layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempts(pub u32);

/// A decoded response with what its headers said.
#[derive(Debug, Clone)]
pub struct ApiResponse<T> {
    value: T,
    request_id: Option<String>,
    headers: HeaderMap,
    attempts: u32,
}

impl<T> ApiResponse<T> {
    /// The `request-id` header.
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }
    /// The `anthropic-ratelimit-*` headers (parsed on each call).
    pub fn rate_limits(&self) -> RateLimitHeaders {
        RateLimitHeaders::from_headers(&self.headers)
    }
    /// All response headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }
    /// How many attempts the call took (1 when the first succeeded).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }
    /// The decoded value.
    pub fn into_inner(self) -> T {
        self.value
    }
}

impl<T> Deref for ApiResponse<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

/// The typed Messages service over any HTTP service to the API.
///
/// The inner service gets complete `http::Request`s (URL, key, version, JSON body) and may be
/// any stack of layers over any HTTP client; when it has no [`ClassifyLayer`] an error status
/// is still turned into a typed error here.
///
/// [`ClassifyLayer`]: crate::classify::ClassifyLayer
#[derive(Debug, Clone)]
pub struct MessagesService<S> {
    inner: S,
    endpoint: Arc<Endpoint>,
    max_body: usize,
    long_request_guard: bool,
}

impl<S> MessagesService<S> {
    /// Sends through `inner` to `endpoint`.
    pub fn new(inner: S, endpoint: Endpoint) -> Self {
        Self {
            inner,
            endpoint: Arc::new(endpoint),
            max_body: DEFAULT_MAX_RESPONSE_BODY,
            long_request_guard: false,
        }
    }
    /// Reads at most `bytes` of a successful response body.
    pub fn max_response_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }
    /// Refuse non-streaming calls whose `max_tokens` would take longer than 10 minutes
    /// (`3600 * max_tokens / 128000` s), as the SDKs do when no explicit timeout is set.
    pub fn long_request_guard(mut self, on: bool) -> Self {
        self.long_request_guard = on;
        self
    }
    /// The endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }
    /// The inner service, consuming the wrapper.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// The future of [`MessagesService`].
pub type ResponseFuture<T> = Pin<Box<dyn Future<Output = Result<ApiResponse<T>, Error>> + Send>>;

/// Longest expected generation time of a non-streaming call without an explicit timeout.
const MAX_NON_STREAMING: f64 = 600.0;

/// The SDKs' guard: `3600 * max_tokens / 128000` seconds must not exceed 10 minutes.
pub(crate) fn check_expected_time(max_tokens: u32) -> Result<(), Error> {
    let expected = 3600.0 * f64::from(max_tokens) / 128_000.0;
    if expected > MAX_NON_STREAMING {
        let msg = format!(
            "max_tokens {max_tokens} may take about {:.0} minutes, longer than the 10-minute \
             limit for a non-streaming call: stream it, or set an explicit timeout",
            expected / 60.0
        );
        return Err(Error::InvalidRequest(InvalidRequestError::new(msg)));
    }
    Ok(())
}

/// Reads and decodes a response; a non-2xx becomes a typed error even without the classify
/// layer.
async fn read_response<RB, T>(resp: Response<RB>, max_body: usize) -> Result<ApiResponse<T>, Error>
where
    RB: Body,
    RB::Error: Into<BoxError>,
    T: DeserializeOwned,
{
    let (parts, body) = resp.into_parts();
    let limit = if parts.status.is_success() {
        max_body
    } else {
        classify::DEFAULT_MAX_ERROR_BODY
    };
    let bytes = match Limited::new(body, limit).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() && !parts.status.is_success() => {
            Bytes::new()
        }
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            let msg = format!("response body larger than {limit} bytes");
            return Err(Error::Decode(DecodeError::new(msg, &[], Some(e))));
        }
        Err(e) => return Err(Error::from_service_error(e)),
    };
    if !parts.status.is_success() {
        return Err(classify::api_error(parts, &bytes));
    }
    let value: T = serde_json::from_slice(&bytes).map_err(|e| {
        let what = std::any::type_name::<T>()
            .rsplit("::")
            .next()
            .unwrap_or("value");
        Error::Decode(DecodeError::new(
            format!("the response body is not a {what}"),
            &bytes,
            Some(Box::new(e)),
        ))
    })?;
    let attempts = parts.extensions.get::<Attempts>().map_or(1, |a| a.0);
    Ok(ApiResponse {
        value,
        request_id: classify::parse_request_id(&parts.headers),
        headers: parts.headers,
        attempts,
    })
}

/// A request body of the Messages API: where it goes, what comes back, and what is
/// checked before it is sent. Implemented by [`CreateMessageRequest`] and
/// [`CountTokensRequest`], the two requests [`MessagesService`] serves.
pub trait ApiRequest: Serialize + sealed::Sealed {
    /// The decoded response.
    type Output: DeserializeOwned + Send + 'static;
    /// The path under the base URL.
    const PATH: &'static str;
    /// Refuses a request before sending (`long_request_guard` as configured).
    fn check(&self, _long_request_guard: bool) -> Result<(), Error> {
        Ok(())
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::CreateMessageRequest {}
    impl Sealed for super::CountTokensRequest {}
}

impl ApiRequest for CreateMessageRequest {
    type Output = Message;
    const PATH: &'static str = "/v1/messages";

    fn check(&self, long_request_guard: bool) -> Result<(), Error> {
        if self.stream == Some(true) {
            let e = InvalidRequestError::new(
                "`stream: true` needs the streaming call; `create` returns a whole Message",
            );
            return Err(Error::InvalidRequest(e));
        }
        if long_request_guard {
            check_expected_time(self.max_tokens)?;
        }
        Ok(())
    }
}

impl ApiRequest for CountTokensRequest {
    type Output = TokenCount;
    const PATH: &'static str = "/v1/messages/count_tokens";
}

impl<S, RB, R> Service<R> for MessagesService<S>
where
    S: Service<Request<RequestBody>, Response = Response<RB>>,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    RB: Body + Send + 'static,
    RB::Data: Send,
    RB::Error: Into<BoxError>,
    R: ApiRequest,
{
    type Response = ApiResponse<R::Output>;
    type Error = Error;
    type Future = ResponseFuture<R::Output>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx).map_err(Error::from_service_error)
    }

    fn call(&mut self, req: R) -> Self::Future {
        if let Err(e) = req.check(self.long_request_guard) {
            return Box::pin(std::future::ready(Err(e)));
        }
        let json = match serde_json::to_vec(&req) {
            Ok(j) => Bytes::from(j),
            Err(e) => {
                let msg = format!("cannot serialize the request: {e}");
                let e = Error::InvalidRequest(InvalidRequestError::new(msg));
                return Box::pin(std::future::ready(Err(e)));
            }
        };
        let http_req = self.endpoint.post(R::PATH, json);
        // The inner service was made ready by `poll_ready`: call it now, await later.
        let call = self.inner.call(http_req);
        let max_body = self.max_body;
        Box::pin(async move {
            let resp = call.await.map_err(Error::from_service_error)?;
            read_response(resp, max_body).await
        })
    }
}
