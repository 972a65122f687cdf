//! Message Batches: the latency-tolerant lane, at half the price and with rate limits of its
//! own.
//!
//! [`Batches`] (from [`Client::batches`](crate::Client::batches) or
//! [`MessagesService::batches`]) creates, retrieves, lists, cancels and deletes batches and
//! streams their results. Every call goes through the same stack as the Messages calls
//! (classify, retry, timeouts, pacing does not apply), with the same typed [`Error`]s.
//!
//! - **Validation before sending**: [`validate`] refuses a batch with a malformed or duplicate
//!   `custom_id`, a `max_tokens` of 0, a `stream: true`, more than [`MAX_REQUESTS`] requests or
//!   more than [`MAX_BYTES`] of JSON, with [`Error::InvalidRequest`] naming the offending item;
//!   nothing is sent. [`split`] cuts a large job into batches that fit.
//! - **Results as a stream**: [`BatchResults`] reads the JSONL file line by line, each line at
//!   most [`DEFAULT_MAX_RESULT_LINE`] bytes (a longer one is an [`Error::Decode`], never a
//!   crash and never the whole file in memory), each a [`BatchResult`] keyed by `custom_id`:
//!   `succeeded` (a `Message`), `errored` (a typed error), `canceled` or `expired`.
//! - **A whole job**: [`Batches::submit`] splits and creates, [`BatchJob::wait`] polls with
//!   backoff until every batch has ended (reporting the counts), [`BatchJob::results`]
//!   streams every result. The batch ids are all a job needs: [`BatchJob::resume`] picks it up
//!   after a restart.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use anthropic_mock::{MockConfig, MockServer};
//! use tower_anthropic::batches::{BatchOutcome, BatchRequest};
//! use tower_anthropic::{Client, messages::CreateMessageRequest};
//!
//! let mock = MockServer::start(MockConfig::default()).await?;
//! let client = Client::builder().api_key("sk-ant-test").base_url(mock.url()).build()?;
//! let requests: Vec<BatchRequest> = (0..50)
//!     .map(|i| BatchRequest::new(format!("q{i}"), CreateMessageRequest::new("claude-haiku-4-5", 64).user("Hi")))
//!     .collect();
//! let job = client.batches().submit(requests).await?;
//! job.wait(&client.batches(), |b| println!("{:?}", b.request_counts)).await?;
//! let mut results = job.results(&client.batches());
//! let mut answered = 0;
//! while let Some(r) = results.next().await {
//!     if let BatchOutcome::Succeeded { message } = r?.result {
//!         answered += usize::from(!message.text().is_empty());
//!     }
//! }
//! assert_eq!(answered, 50);
//! # Ok(()) }
//! ```

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{Method, Request, Response};
use http_body::Body;
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tower::{Service, ServiceExt};

use crate::ApiErrorKind;
use crate::body::{AtBound, Buffered, Collect, ResponseMode};
use crate::error::{BoxError, DecodeError, Error, InvalidRequestError};
use crate::messages::{CreateMessageRequest, Message, MessagesService, decode};
use crate::transport::RequestBody;

/// Most requests in one batch, as the API allows.
pub const MAX_REQUESTS: usize = 100_000;
/// Most bytes of JSON in one batch, as the API allows (256 MB).
pub const MAX_BYTES: usize = 256 * 1000 * 1000;
/// Longest line of a results file read by default (16 MiB).
pub const DEFAULT_MAX_RESULT_LINE: usize = 16 * 1024 * 1024;

const PATH: &str = "/v1/messages/batches";

/// One request of a batch: its `custom_id` (1 to 64 letters, digits, `-` or `_`, unique in
/// the batch) and the Messages request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchRequest {
    /// Matches the request to its result.
    pub custom_id: String,
    /// The request (never streamed).
    pub params: CreateMessageRequest,
}

impl BatchRequest {
    /// A request with this `custom_id`.
    pub fn new(custom_id: impl Into<String>, params: CreateMessageRequest) -> Self {
        Self {
            custom_id: custom_id.into(),
            params,
        }
    }
}

/// Where a batch is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessingStatus {
    /// Requests are being processed.
    InProgress,
    /// A cancel was asked; requests not started will be canceled.
    Canceling,
    /// Every request has a result.
    Ended,
}

/// How many requests of a batch are where.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestCounts {
    /// Not done yet.
    pub processing: u64,
    /// Answered.
    pub succeeded: u64,
    /// Failed.
    pub errored: u64,
    /// Canceled before they ran.
    pub canceled: u64,
    /// Not run within 24 hours.
    pub expired: u64,
}

/// A Message Batch as the API describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageBatch {
    /// `msgbatch_...`.
    pub id: String,
    /// Where it is.
    pub processing_status: ProcessingStatus,
    /// Its requests' counts.
    pub request_counts: RequestCounts,
    /// When it ended (RFC 3339).
    #[serde(default)]
    pub ended_at: Option<String>,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// When it expires (RFC 3339), 24 hours after creation.
    pub expires_at: String,
    /// When a cancel was asked (RFC 3339).
    #[serde(default)]
    pub cancel_initiated_at: Option<String>,
    /// Where the results are, once it has ended.
    #[serde(default)]
    pub results_url: Option<String>,
    /// Other fields.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl MessageBatch {
    /// Whether every request has a result.
    pub fn is_ended(&self) -> bool {
        self.processing_status == ProcessingStatus::Ended
    }
}

/// One page of [`Batches::list`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchPage {
    /// The batches, newest first.
    pub data: Vec<MessageBatch>,
    /// Whether more pages follow.
    pub has_more: bool,
    /// The first id of the page.
    #[serde(default)]
    pub first_id: Option<String>,
    /// The last id of the page (`after_id` of the next page).
    #[serde(default)]
    pub last_id: Option<String>,
}

/// One line of a results file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BatchResult {
    /// The request's `custom_id`.
    pub custom_id: String,
    /// What became of it.
    pub result: BatchOutcome,
}

/// What became of one request of a batch.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BatchOutcome {
    /// Answered.
    Succeeded {
        /// The answer.
        message: Box<Message>,
    },
    /// Failed, with the API's error.
    Errored {
        /// The error.
        error: BatchError,
    },
    /// Canceled before it ran.
    Canceled,
    /// Not run within 24 hours.
    Expired,
}

/// The error of an `errored` result, as the API writes it (`{"type": "error", "error": {...}}`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BatchError {
    /// The error itself.
    pub error: BatchErrorDetail,
}

/// The `error` object of a [`BatchError`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BatchErrorDetail {
    /// `invalid_request_error`, `api_error`, ...
    #[serde(rename = "type")]
    pub error_type: String,
    /// The API's message.
    #[serde(default)]
    pub message: String,
}

impl BatchError {
    /// The kind of error, from its type.
    pub fn kind(&self) -> ApiErrorKind {
        ApiErrorKind::from_error_type(&self.error.error_type)
    }
}

fn refuse(msg: String) -> Error {
    Error::InvalidRequest(InvalidRequestError::new(msg))
}

fn valid_custom_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Checks one request, `i` its index (for the message).
fn check_one(i: usize, r: &BatchRequest) -> Result<usize, Error> {
    if !valid_custom_id(&r.custom_id) {
        let shown: String = r.custom_id.chars().take(70).collect();
        return Err(refuse(format!(
            "requests[{i}].custom_id {shown:?}: 1 to 64 letters, digits, - or _"
        )));
    }
    if r.params.max_tokens == 0 {
        return Err(refuse(format!(
            "requests[{i}] ({}): max_tokens must be at least 1",
            r.custom_id
        )));
    }
    if r.params.stream == Some(true) {
        return Err(refuse(format!(
            "requests[{i}] ({}): batches do not stream",
            r.custom_id
        )));
    }
    serde_json::to_vec(r).map(|v| v.len() + 1).map_err(|e| {
        refuse(format!(
            "requests[{i}] ({}): cannot serialize: {e}",
            r.custom_id
        ))
    })
}

/// Refuses a batch the API would refuse, naming the offending item: a malformed or duplicate
/// `custom_id`, a `max_tokens` of 0, `stream: true`, no request, more than [`MAX_REQUESTS`]
/// requests or more than [`MAX_BYTES`] of JSON.
pub fn validate(requests: &[BatchRequest]) -> Result<(), Error> {
    if requests.is_empty() {
        return Err(refuse("a batch needs at least one request".into()));
    }
    if requests.len() > MAX_REQUESTS {
        return Err(refuse(format!(
            "{} requests: a batch holds at most {MAX_REQUESTS} (split it)",
            requests.len()
        )));
    }
    let mut seen = HashSet::new();
    let mut bytes = 0;
    for (i, r) in requests.iter().enumerate() {
        bytes += check_one(i, r)?;
        if !seen.insert(r.custom_id.as_str()) {
            return Err(refuse(format!(
                "requests[{i}]: duplicate custom_id {:?}",
                r.custom_id
            )));
        }
    }
    if bytes > MAX_BYTES {
        return Err(refuse(format!(
            "{bytes} bytes of requests: a batch holds at most {MAX_BYTES} (split it)"
        )));
    }
    Ok(())
}

/// Cuts `requests` into batches of at most `max_requests` requests and `max_bytes` of JSON
/// (each clamped to the API's limits), checking every request as [`validate`] does (a
/// `custom_id` must be unique across the whole job).
pub fn split(
    requests: Vec<BatchRequest>,
    max_requests: usize,
    max_bytes: usize,
) -> Result<Vec<Vec<BatchRequest>>, Error> {
    let max_requests = max_requests.clamp(1, MAX_REQUESTS);
    let max_bytes = max_bytes.clamp(1, MAX_BYTES);
    let mut seen = HashSet::new();
    let mut out: Vec<Vec<BatchRequest>> = Vec::new();
    let mut size = 0;
    for (i, r) in requests.into_iter().enumerate() {
        let n = check_one(i, &r)?;
        if n > max_bytes {
            return Err(refuse(format!(
                "requests[{i}] ({}): {n} bytes, more than a batch may hold",
                r.custom_id
            )));
        }
        if !seen.insert(r.custom_id.clone()) {
            return Err(refuse(format!(
                "requests[{i}]: duplicate custom_id {:?}",
                r.custom_id
            )));
        }
        let full = out
            .last()
            .is_none_or(|b| b.len() >= max_requests || size + n > max_bytes);
        if full {
            out.push(Vec::new());
            size = 0;
        }
        size += n;
        if let Some(b) = out.last_mut() {
            b.push(r);
        }
    }
    if out.is_empty() {
        return Err(refuse("a batch needs at least one request".into()));
    }
    Ok(out)
}

/// The Message Batches API over a Messages stack.
#[derive(Debug, Clone)]
pub struct Batches<S> {
    svc: MessagesService<S>,
    max_line: usize,
    poll: (Duration, Duration),
}

impl<S> MessagesService<S> {
    /// The Message Batches API over the same stack and endpoint.
    pub fn batches(&self) -> Batches<S>
    where
        S: Clone,
    {
        Batches {
            svc: self.clone(),
            max_line: DEFAULT_MAX_RESULT_LINE,
            poll: (Duration::from_secs(1), Duration::from_secs(60)),
        }
    }
}

impl<S, RB> Batches<S>
where
    S: Service<Request<RequestBody>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    RB: Body + Send + 'static,
    RB::Data: Send,
    RB::Error: Into<BoxError>,
{
    /// The longest results line read (at least 1 KiB).
    pub fn max_result_line(mut self, bytes: usize) -> Self {
        self.max_line = bytes.max(1024);
        self
    }

    /// How [`BatchJob::wait`] polls: first after `first`, doubling up to `max` (each at least
    /// 10 ms, at most an hour).
    pub fn poll_interval(mut self, first: Duration, max: Duration) -> Self {
        let clamp = |d: Duration| d.clamp(Duration::from_millis(10), Duration::from_secs(3600));
        self.poll = (clamp(first), clamp(max).max(clamp(first)));
        self
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
        streaming: bool,
    ) -> Result<Response<RB>, Error> {
        let mut req = self.svc.endpoint().request(method, path, body);
        if streaming {
            req.extensions_mut().insert(ResponseMode::Streaming);
        }
        self.svc
            .get_ref()
            .clone()
            .oneshot(req)
            .await
            .map_err(Error::from_service_error)
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<T, Error> {
        let resp = self.send(method, path, body, false).await?;
        let (parts, body) = resp.into_parts();
        if !parts.status.is_success() {
            return Err(crate::classify::read_api_error(parts, body).await);
        }
        let limit = if parts.extensions.get::<Buffered>().is_some() {
            usize::MAX
        } else {
            self.svc.max_body()
        };
        let bytes = Collect::new(body, limit, AtBound::Fail).await?;
        decode(&bytes)
    }

    /// `POST /v1/messages/batches`: creates a batch, after [`validate`] (nothing is sent when
    /// it refuses).
    pub async fn create(&self, requests: &[BatchRequest]) -> Result<MessageBatch, Error> {
        validate(requests)?;
        #[derive(Serialize)]
        struct Body<'a> {
            requests: &'a [BatchRequest],
        }
        let body = serde_json::to_vec(&Body { requests })
            .map_err(|e| refuse(format!("cannot serialize the batch: {e}")))?;
        self.json(Method::POST, PATH, Bytes::from(body)).await
    }

    /// `GET /v1/messages/batches/{id}`.
    pub async fn retrieve(&self, id: &str) -> Result<MessageBatch, Error> {
        self.json(Method::GET, &batch_path(id)?, Bytes::new()).await
    }

    /// `GET /v1/messages/batches`: one page, newest first (`limit` 1 to 1000; `after_id`: the
    /// page after that id).
    pub async fn list(&self, limit: u32, after_id: Option<&str>) -> Result<BatchPage, Error> {
        let mut path = format!("{PATH}?limit={}", limit.clamp(1, 1000));
        if let Some(a) = after_id {
            check_id(a)?;
            path.push_str("&after_id=");
            path.push_str(a);
        }
        self.json(Method::GET, &path, Bytes::new()).await
    }

    /// `POST /v1/messages/batches/{id}/cancel`.
    pub async fn cancel(&self, id: &str) -> Result<MessageBatch, Error> {
        let path = format!("{}/cancel", batch_path(id)?);
        self.json(Method::POST, &path, Bytes::new()).await
    }

    /// `DELETE /v1/messages/batches/{id}` (an ended batch).
    pub async fn delete(&self, id: &str) -> Result<(), Error> {
        let _: Value = self
            .json(Method::DELETE, &batch_path(id)?, Bytes::new())
            .await?;
        Ok(())
    }

    /// `GET /v1/messages/batches/{id}/results`: the results file, read as a stream of lines.
    pub async fn results(&self, id: &str) -> Result<BatchResults, Error> {
        let resp = self
            .send(
                Method::GET,
                &format!("{}/results", batch_path(id)?),
                Bytes::new(),
                true,
            )
            .await?;
        let (parts, body) = resp.into_parts();
        if !parts.status.is_success() {
            return Err(crate::classify::read_api_error(parts, body).await);
        }
        let body = body
            .map_frame(|f| f.map_data(|mut d| d.copy_to_bytes(d.remaining())))
            .map_err(Error::from_service_error)
            .boxed_unsync();
        Ok(BatchResults {
            body: Some(body),
            buf: BytesMut::new(),
            ready: VecDeque::new(),
            max_line: self.max_line,
            pending: VecDeque::new(),
            batches: None,
        })
    }

    /// Splits `requests` (validating each) and creates as many batches as needed.
    pub async fn submit(&self, requests: Vec<BatchRequest>) -> Result<BatchJob, Error> {
        let parts = split(requests, MAX_REQUESTS, MAX_BYTES)?;
        let mut ids = Vec::with_capacity(parts.len());
        for p in parts {
            ids.push(self.create(&p).await?.id);
        }
        Ok(BatchJob { ids })
    }
}

fn check_id(id: &str) -> Result<(), Error> {
    let ok = (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        let shown: String = id.chars().take(40).collect();
        Err(refuse(format!("invalid batch id {shown:?}")))
    }
}

fn batch_path(id: &str) -> Result<String, Error> {
    check_id(id)?;
    Ok(format!("{PATH}/{id}"))
}

/// Several batches that make one job: their ids are all it takes to resume it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchJob {
    ids: Vec<String>,
}

impl BatchJob {
    /// A job made of these batches (to pick it up after a restart).
    pub fn resume(ids: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            ids: ids.into_iter().map(Into::into).collect(),
        }
    }

    /// The batch ids (keep them to resume).
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    /// Polls (with backoff, through the stack: 529s and resets are retried) until every batch
    /// has ended; `progress` gets each batch as it is seen. The batches as they ended.
    pub async fn wait<S, RB>(
        &self,
        batches: &Batches<S>,
        mut progress: impl FnMut(&MessageBatch),
    ) -> Result<Vec<MessageBatch>, Error>
    where
        S: Service<Request<RequestBody>, Response = Response<RB>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        RB: Body + Send + 'static,
        RB::Data: Send,
        RB::Error: Into<BoxError>,
    {
        let mut ended = Vec::with_capacity(self.ids.len());
        for id in &self.ids {
            let mut wait = batches.poll.0;
            loop {
                let b = batches.retrieve(id).await?;
                progress(&b);
                if b.is_ended() {
                    ended.push(b);
                    break;
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(batches.poll.1);
            }
        }
        Ok(ended)
    }

    /// Every result of every batch, one batch after the other (each file read as a stream).
    pub fn results<S, RB>(&self, batches: &Batches<S>) -> BatchResults
    where
        S: Service<Request<RequestBody>, Response = Response<RB>> + Clone + Send + Sync + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        RB: Body + Send + 'static,
        RB::Data: Send,
        RB::Error: Into<BoxError>,
    {
        let b = batches.clone();
        let open: OpenResults = Box::new(move |id: String| {
            let b = b.clone();
            Box::pin(async move { b.results(&id).await })
        });
        BatchResults {
            body: None,
            buf: BytesMut::new(),
            ready: VecDeque::new(),
            max_line: batches.max_line,
            pending: self.ids.iter().cloned().collect(),
            batches: Some(open),
        }
    }
}

type ResultsBody = http_body_util::combinators::UnsyncBoxBody<Bytes, Error>;
type OpenResults = Box<
    dyn Fn(
            String,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<BatchResults, Error>> + Send>,
        > + Send,
>;

/// The results of one batch (or of a [`BatchJob`]'s batches in turn), line by line; each line
/// bounded ([`Batches::max_result_line`]).
pub struct BatchResults {
    body: Option<ResultsBody>,
    buf: BytesMut,
    ready: VecDeque<Bytes>,
    max_line: usize,
    /// A job's batches not opened yet, and how to open one.
    pending: VecDeque<String>,
    batches: Option<OpenResults>,
}

impl std::fmt::Debug for BatchResults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchResults")
            .field("buffered", &self.buf.len())
            .field("batches_left", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl BatchResults {
    /// The next result; `None` at the end.
    pub async fn next(&mut self) -> Option<Result<BatchResult, Error>> {
        loop {
            if let Some(line) = self.ready.pop_front() {
                return Some(decode::<BatchResult>(&line));
            }
            let Some(body) = self.body.as_mut() else {
                // Between the batches of a job: open the next one.
                let id = self.pending.pop_front()?;
                let open = self.batches.as_ref()?;
                match open(id).await {
                    Ok(next) => {
                        self.body = next.body;
                        self.buf.clear();
                        continue;
                    }
                    Err(e) => return Some(Err(e)),
                }
            };
            match body.frame().await {
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    if let Err(e) = self.feed(&data) {
                        self.body = None;
                        self.pending.clear();
                        return Some(Err(e));
                    }
                }
                Some(Err(e)) => {
                    self.body = None;
                    self.pending.clear();
                    return Some(Err(e));
                }
                None => {
                    self.body = None;
                    let rest = self.buf.split().freeze();
                    if !rest.iter().all(u8::is_ascii_whitespace) {
                        self.ready.push_back(rest);
                    }
                }
            }
        }
    }

    /// Cuts complete lines out of what has arrived; a line past the bound is an error.
    fn feed(&mut self, data: &[u8]) -> Result<(), Error> {
        let mut data = data;
        while let Some(i) = data.iter().position(|b| *b == b'\n') {
            if self.buf.len() + i > self.max_line {
                return Err(too_long(self.max_line, &self.buf));
            }
            self.buf.extend_from_slice(&data[..i]);
            let line = self.buf.split().freeze();
            if !line.iter().all(u8::is_ascii_whitespace) {
                self.ready.push_back(line);
            }
            data = &data[i + 1..];
        }
        if self.buf.len() + data.len() > self.max_line {
            return Err(too_long(self.max_line, &self.buf));
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }
}

fn too_long(max: usize, start: &[u8]) -> Error {
    Error::Decode(DecodeError::new(
        format!("a results line is longer than {max} bytes"),
        start,
        None,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(id: &str, max_tokens: u32) -> BatchRequest {
        BatchRequest::new(
            id,
            CreateMessageRequest::new("claude-m", max_tokens).user("hi"),
        )
    }

    #[test]
    fn validation_names_the_item() {
        let cases: Vec<(Vec<BatchRequest>, &str)> = vec![
            (vec![], "at least one"),
            (
                vec![req("a", 5), req("a", 5)],
                "requests[1]: duplicate custom_id \"a\"",
            ),
            (
                vec![req("ok", 5), req("bad id", 5)],
                "requests[1].custom_id",
            ),
            (vec![req("", 5)], "requests[0].custom_id"),
            (vec![req(&"x".repeat(65), 5)], "requests[0].custom_id"),
            (
                vec![req("a", 5), req("z", 0)],
                "requests[1] (z): max_tokens",
            ),
        ];
        for (reqs, needle) in cases {
            let e = validate(&reqs).unwrap_err();
            assert!(e.to_string().contains(needle), "{e}");
            assert!(matches!(e, Error::InvalidRequest(_)));
        }
        let mut streamed = req("s", 5);
        streamed.params.stream = Some(true);
        assert!(
            validate(&[streamed])
                .unwrap_err()
                .to_string()
                .contains("stream")
        );
        assert!(validate(&[req("a", 5), req("b-2_c", 5)]).is_ok());
    }

    #[test]
    fn split_cuts_by_count_and_bytes() {
        let reqs: Vec<_> = (0..25).map(|i| req(&format!("r{i}"), 5)).collect();
        let parts = split(reqs.clone(), 10, MAX_BYTES).unwrap();
        assert_eq!(parts.iter().map(Vec::len).collect::<Vec<_>>(), [10, 10, 5]);
        let one = serde_json::to_vec(&reqs[0]).unwrap().len() + 1;
        let parts = split(reqs.clone(), 100, one * 4 + 2).unwrap();
        assert!(parts.iter().all(|p| p.len() <= 4));
        assert_eq!(parts.iter().map(Vec::len).sum::<usize>(), 25);
        let mut dup = reqs;
        dup.push(req("r3", 5));
        assert!(
            split(dup, 10, MAX_BYTES)
                .unwrap_err()
                .to_string()
                .contains("duplicate")
        );
    }

    #[test]
    fn lines_are_bounded() {
        let mut r = BatchResults {
            body: None,
            buf: BytesMut::new(),
            ready: VecDeque::new(),
            max_line: 1024,
            pending: VecDeque::new(),
            batches: None,
        };
        r.feed(b"{\"a\":1}\n{\"b\"").unwrap();
        r.feed(b":2}\n\n").unwrap();
        assert_eq!(r.ready.len(), 2);
        let e = r.feed(&vec![b'x'; 2000]).unwrap_err();
        assert!(e.to_string().contains("longer than 1024"), "{e}");
    }
}
