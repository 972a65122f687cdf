//! Message Batches through the client against the mock: paging, polling through faults,
//! results of all four kinds, bounded lines, resuming from batch ids, cancellation.
//! Paused time.

use std::collections::BTreeMap;
use std::time::Duration;

use anthropic_mock::{MockConfig, MockServer, RandomFaults};
use tower_anthropic::batches::{BatchJob, BatchOutcome, BatchRequest, ProcessingStatus};
use tower_anthropic::messages::CreateMessageRequest;
use tower_anthropic::{ApiErrorKind, Client, Error};

fn client(s: &MockServer) -> Client {
    Client::builder()
        .api_key("sk-ant-test")
        .base_url(s.url())
        .build()
        .unwrap()
}

fn reqs(prefix: &str, n: usize) -> Vec<BatchRequest> {
    (0..n)
        .map(|i| {
            BatchRequest::new(
                format!("{prefix}{i}"),
                CreateMessageRequest::new("claude-haiku-4-5", 32).user(format!("q{i}")),
            )
        })
        .collect()
}

async fn mock(batch_speed: f64, faults: RandomFaults) -> MockServer {
    MockServer::start(MockConfig {
        batch_speed,
        faults,
        ..Default::default()
    })
    .await
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn results_of_all_four_kinds_keyed_by_custom_id() {
    let s = mock(10.0, RandomFaults::default()).await;
    let c = client(&s);
    let b = c
        .batches()
        .poll_interval(Duration::from_millis(500), Duration::from_secs(2));
    // An invalid request the client cannot see (no messages): errored by the API.
    let mut first = reqs("a", 20);
    first[5].params.messages.clear();
    let done = b.create(&first).await.unwrap();
    let canceled = b.create(&reqs("c", 200)).await.unwrap();
    let expired = b.create(&reqs("e", 200)).await.unwrap();
    tokio::time::advance(Duration::from_secs(2)).await;
    let cb = b.cancel(&canceled.id).await.unwrap();
    assert_eq!(cb.processing_status, ProcessingStatus::Canceling);
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let expire = http::Request::post(format!("{}/_mock/batches/{}/expire", s.url(), expired.id))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    assert_eq!(http.request(expire).await.unwrap().status(), 200);

    let job = BatchJob::resume([done.id.clone(), canceled.id.clone(), expired.id.clone()]);
    let mut seen = Vec::new();
    let ended = job
        .wait(&b, |batch| seen.push(batch.request_counts))
        .await
        .unwrap();
    assert!(ended.iter().all(|b| b.is_ended()));
    assert!(seen.len() >= 3, "progress was reported");
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    let mut results = job.results(&b);
    let mut ids = Vec::new();
    while let Some(r) = results.next().await {
        let r = r.unwrap();
        let k = match &r.result {
            BatchOutcome::Succeeded { message } => {
                assert!(!message.text().is_empty());
                "succeeded"
            }
            BatchOutcome::Errored { error } => {
                assert_eq!(error.kind(), ApiErrorKind::BadRequest);
                assert_eq!(r.custom_id, "a5");
                "errored"
            }
            BatchOutcome::Canceled => "canceled",
            BatchOutcome::Expired => "expired",
        };
        *kinds.entry(k).or_default() += 1;
        ids.push(r.custom_id);
    }
    assert_eq!(ids.len(), 420);
    assert_eq!(kinds["errored"], 1);
    assert!(kinds["canceled"] > 0 && kinds["expired"] > 0, "{kinds:?}");
    assert_eq!(kinds.values().sum::<usize>(), 420);
}

#[tokio::test(start_paused = true)]
async fn polling_and_paging_survive_529s_and_resets() {
    let faults = RandomFaults {
        seed: 3,
        p529: 0.2,
        p_reset: 0.1,
        ..Default::default()
    };
    let s = mock(50.0, faults).await;
    let c = client(&s);
    let b = c
        .batches()
        .poll_interval(Duration::from_millis(200), Duration::from_secs(1));
    let mut ids = Vec::new();
    for i in 0..5 {
        let batch = b.create(&reqs(&format!("p{i}-"), 30)).await.unwrap();
        ids.push(batch.id);
    }
    // Paging: newest first, two at a time, all five.
    let mut listed = Vec::new();
    let mut after = None;
    loop {
        let page = b.list(2, after.as_deref()).await.unwrap();
        listed.extend(page.data.iter().map(|b| b.id.clone()));
        if !page.has_more {
            break;
        }
        after = page.last_id;
    }
    ids.reverse();
    assert_eq!(listed, ids);
    let job = BatchJob::resume(ids);
    job.wait(&b, |_| {}).await.unwrap();
    let mut n = 0;
    for id in job.ids() {
        let mut r = b.results(id).await.unwrap();
        while let Some(x) = r.next().await {
            assert!(matches!(x.unwrap().result, BatchOutcome::Succeeded { .. }));
            n += 1;
        }
    }
    assert_eq!(n, 150);
    let st = s.stats();
    assert!(
        st.by_status.get(&529).copied().unwrap_or(0) > 0,
        "faults were injected: {st:?}"
    );
    // Delete one, and it is gone.
    b.delete(&job.ids()[0]).await.unwrap();
    let e = b.retrieve(&job.ids()[0]).await.unwrap_err();
    assert_eq!(e.kind(), Some(ApiErrorKind::NotFound));
}

#[tokio::test(start_paused = true)]
async fn a_result_line_over_the_bound_is_a_typed_error() {
    // Answers of 400 tokens: each results line is a few KiB.
    let s = MockServer::start(MockConfig {
        output_tokens: 400,
        ..Default::default()
    })
    .await
    .unwrap();
    let c = client(&s);
    let b = c.batches().max_result_line(1024);
    let mut long = reqs("long", 3);
    for r in &mut long {
        r.params.max_tokens = 1000;
    }
    let batch = b.create(&long).await.unwrap();
    BatchJob::resume([batch.id.clone()])
        .wait(&b, |_| {})
        .await
        .unwrap();
    let mut r = b.results(&batch.id).await.unwrap();
    match r.next().await {
        Some(Err(Error::Decode(e))) => assert!(e.to_string().contains("longer than 1024")),
        other => panic!("{other:?}"),
    }
    assert!(r.next().await.is_none(), "the stream ends after the error");
}

#[tokio::test(start_paused = true)]
async fn bad_batches_are_refused_before_sending() {
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let c = client(&s);
    let mut bad = reqs("d", 3);
    bad[2].custom_id = "d0".into();
    let e = c.batches().create(&bad).await.unwrap_err();
    assert!(
        e.to_string().contains("requests[2]: duplicate custom_id"),
        "{e}"
    );
    let e = c.batches().retrieve("../../etc").await.unwrap_err();
    assert!(matches!(e, Error::InvalidRequest(_)));
    assert_eq!(s.stats().requests, 0);
    // A job larger than a batch is split: submit makes two batches.
    let many = reqs("m", 100_001);
    let job = c.batches().submit(many).await.unwrap();
    assert_eq!(job.ids().len(), 2);
}
