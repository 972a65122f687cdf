//! `calls URL (bare|stack|unpaced) N`: N sequential calls to the mock at URL, bare hyper,
//! the default `Client`, or the default `Client` without its pacer, on a current-thread
//! runtime; for counting instructions per call under callgrind (`benches/callgrind.sh`),
//! where timing means nothing but counts repeat.
//!
//! `calls - (canned-bare|canned-stack|canned-unpaced) N`: the same without a network, over
//! an in-memory service with a canned answer (`benches::canned`, as the `stack_cpu` bench):
//! the bare call, the default stack, the default stack without the pacer.

use benches::canned;
use benches::per_call::{bare, bare_once, client, client_once};
use tower_anthropic::pacing::Pacer;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: calls URL (bare|stack|unpaced) N, or calls - (canned-bare|canned-stack|canned-unpaced) N";
    let url = args.first().expect(usage);
    let mode = args.get(1).expect(usage);
    let n: u64 = args.get(2).and_then(|v| v.parse().ok()).expect(usage);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        match mode.as_str() {
            "bare" => {
                let bare = bare();
                let uri: http::Uri = format!("{url}/v1/messages").parse().expect("a URI");
                for _ in 0..n {
                    bare_once(&bare, &uri).await;
                }
            }
            "stack" | "unpaced" => {
                let client = client(url, mode == "stack");
                for _ in 0..n {
                    client_once(&client).await;
                }
            }
            "canned-bare" => {
                let svc = canned::canned();
                for _ in 0..n {
                    let v = canned::bare_once(&svc).await;
                    assert_eq!(v["type"], "message");
                }
            }
            "canned-stack" | "canned-unpaced" => {
                let pacer = (mode == "canned-stack").then(Pacer::new);
                let svc = canned::default_stack(pacer);
                for _ in 0..n {
                    let msg = svc.create(canned::request()).await.expect("a message");
                    assert_eq!(msg.kind, "message");
                }
            }
            _ => panic!("{usage}"),
        }
    });
}
