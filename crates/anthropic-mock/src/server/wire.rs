//! What the server's handlers share: the response type, the routes, how an answer is
//! delivered and the control of a connection. A leaf: it imports none of its siblings, so
//! they import it and not each other.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::Response;
use tokio::sync::Notify;

use crate::body::MockBody;

/// A response of the mock.
pub(super) type Resp = Response<MockBody>;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Route {
    Messages,
    CountTokens,
}

/// How a success is to be delivered, from a scripted entry.
#[derive(Clone, Copy)]
pub(super) enum Delivery {
    Normal,
    CutBody,
    StallBody(Duration),
    StreamError(usize),
    StreamCut(usize),
    StreamStall(usize, Duration),
}

/// Per-connection control: the handler asks for a reset, the connection task drops the
/// socket with `SO_LINGER` 0 so the peer sees a TCP RST.
#[derive(Debug, Default)]
pub(super) struct ConnControl {
    pub(super) reset: AtomicBool,
    pub(super) notify: Notify,
}

impl ConnControl {
    pub(super) fn reset_now(&self) {
        self.reset.store(true, Ordering::SeqCst);
        self.notify.notify_one();
    }
}
