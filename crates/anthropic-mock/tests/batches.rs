//! The mock's Message Batches: validation, processing over time, cancel, expiry, results,
//! paging, delete. Paused time.

use std::time::Duration;

use anthropic_mock::{MockConfig, MockServer};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

async fn call(c: &HttpClient, method: &str, url: &str, body: Value) -> (u16, Bytes) {
    let req = http::Request::builder()
        .method(method)
        .uri(url)
        .header("x-api-key", "sk-test")
        .header("anthropic-version", "2023-06-01")
        .body(Full::new(if body.is_null() {
            Bytes::new()
        } else {
            Bytes::from(body.to_string())
        }))
        .unwrap();
    let resp = c.request(req).await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.into_body().collect().await.unwrap().to_bytes())
}

fn j(b: &Bytes) -> Value {
    serde_json::from_slice(b).unwrap()
}

fn requests(n: usize) -> Value {
    let reqs: Vec<Value> = (0..n)
        .map(|i| {
            let max_tokens = if i % 10 == 9 { 0 } else { 16 };
            json!({"custom_id": format!("r{i}"), "params": {"model": "claude-sonnet-4-6",
                "max_tokens": max_tokens, "messages": [{"role": "user", "content": "hi"}]}})
        })
        .collect();
    json!({ "requests": reqs })
}

#[tokio::test(start_paused = true)]
async fn a_batch_advances_with_time_and_serves_its_results() {
    let s = MockServer::start(MockConfig {
        batch_speed: 10.0,
        ..Default::default()
    })
    .await
    .unwrap();
    let c: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let base = format!("{}/v1/messages/batches", s.url());
    let (st, b) = call(&c, "POST", &base, requests(30)).await;
    assert_eq!(st, 200, "{b:?}");
    let batch = j(&b);
    let id = batch["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("msgbatch_"));
    assert_eq!(batch["processing_status"], "in_progress");
    assert_eq!(batch["request_counts"]["processing"], 30);
    // Results are not there yet.
    let (st, _) = call(&c, "GET", &format!("{base}/{id}/results"), Value::Null).await;
    assert_eq!(st, 400);
    tokio::time::advance(Duration::from_secs(1)).await;
    let (_, b) = call(&c, "GET", &format!("{base}/{id}"), Value::Null).await;
    assert_eq!(j(&b)["request_counts"]["processing"], 20);
    tokio::time::advance(Duration::from_secs(3)).await;
    let (_, b) = call(&c, "GET", &format!("{base}/{id}"), Value::Null).await;
    let done = j(&b);
    assert_eq!(done["processing_status"], "ended");
    assert_eq!(done["request_counts"]["succeeded"], 27);
    assert_eq!(done["request_counts"]["errored"], 3);
    assert!(done["results_url"].as_str().unwrap().ends_with("/results"));
    let (st, b) = call(&c, "GET", &format!("{base}/{id}/results"), Value::Null).await;
    assert_eq!(st, 200);
    let lines: Vec<Value> = b
        .split(|c| *c == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 30);
    let errored: Vec<_> = lines
        .iter()
        .filter(|l| l["result"]["type"] == "errored")
        .collect();
    assert_eq!(errored.len(), 3);
    assert_eq!(
        errored[0]["result"]["error"]["error"]["type"],
        "invalid_request_error"
    );
    assert_eq!(lines[0]["result"]["message"]["type"], "message");
    // Delete.
    let (st, b) = call(&c, "DELETE", &format!("{base}/{id}"), Value::Null).await;
    assert_eq!(
        (st, j(&b)["type"].clone()),
        (200, json!("message_batch_deleted"))
    );
    let (st, _) = call(&c, "GET", &format!("{base}/{id}"), Value::Null).await;
    assert_eq!(st, 404);
}

#[tokio::test(start_paused = true)]
async fn cancel_and_expiry_end_a_batch_and_lists_page() {
    let s = MockServer::start(MockConfig {
        batch_speed: 10.0,
        ..Default::default()
    })
    .await
    .unwrap();
    let c: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let base = format!("{}/v1/messages/batches", s.url());
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (_, b) = call(&c, "POST", &base, requests(100)).await;
        ids.push(j(&b)["id"].as_str().unwrap().to_owned());
    }
    tokio::time::advance(Duration::from_secs(2)).await;
    // Cancel: canceling, then ended a second later with the rest canceled.
    let (_, b) = call(
        &c,
        "POST",
        &format!("{base}/{}/cancel", ids[0]),
        Value::Null,
    )
    .await;
    assert_eq!(j(&b)["processing_status"], "canceling");
    let (st, _) = call(&c, "DELETE", &format!("{base}/{}", ids[0]), Value::Null).await;
    assert_eq!(st, 400, "not deletable before it ends");
    tokio::time::advance(Duration::from_secs(1)).await;
    let (_, b) = call(&c, "GET", &format!("{base}/{}", ids[0]), Value::Null).await;
    let v = j(&b);
    assert_eq!(v["processing_status"], "ended");
    assert!(v["request_counts"]["canceled"].as_u64().unwrap() >= 60);
    assert!(v["cancel_initiated_at"].is_string());
    // Expiry on demand.
    let (st, _) = call(
        &c,
        "POST",
        &format!("{}/_mock/batches/{}/expire", s.url(), ids[1]),
        Value::Null,
    )
    .await;
    assert_eq!(st, 200);
    let (_, b) = call(&c, "GET", &format!("{base}/{}", ids[1]), Value::Null).await;
    assert!(j(&b)["request_counts"]["expired"].as_u64().unwrap() >= 60);
    // Newest first, two to a page.
    let (_, b) = call(&c, "GET", &format!("{base}?limit=2"), Value::Null).await;
    let page = j(&b);
    assert_eq!(page["data"][0]["id"], ids[2].as_str());
    assert_eq!(page["has_more"], true);
    let after = page["last_id"].as_str().unwrap();
    let (_, b) = call(
        &c,
        "GET",
        &format!("{base}?limit=2&after_id={after}"),
        Value::Null,
    )
    .await;
    let rest = j(&b);
    assert_eq!(rest["data"][0]["id"], ids[0].as_str());
    assert_eq!(rest["has_more"], false);
}

#[tokio::test(start_paused = true)]
async fn refuses_bad_batches_naming_the_item() {
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let c: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let base = format!("{}/v1/messages/batches", s.url());
    let p = json!({"model": "claude-m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]});
    for (body, needle) in [
        (json!({"requests": []}), "between 1 and"),
        (
            json!({"requests": [{"custom_id": "a", "params": p}, {"custom_id": "a", "params": p}]}),
            "requests.1.custom_id: duplicate",
        ),
        (
            json!({"requests": [{"custom_id": "bad id!", "params": p}]}),
            "requests.0.custom_id",
        ),
        (
            json!({"requests": [{"custom_id": "a"}]}),
            "requests.0.params",
        ),
    ] {
        let (st, b) = call(&c, "POST", &base, body).await;
        assert_eq!(st, 400);
        let msg = j(&b)["error"]["message"].as_str().unwrap().to_owned();
        assert!(msg.contains(needle), "{msg}");
    }
}
