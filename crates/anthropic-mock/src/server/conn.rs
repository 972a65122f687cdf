//! Connections: one task each, and the TCP resets the faults ask for.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::State;
use super::routes::handle;
use super::wire::ConnControl;
use crate::stats::Counters;
struct ConnGuard(Arc<Counters>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.connection_closed();
    }
}

pub(super) async fn serve_connection(
    stream: TcpStream,
    state: Arc<State>,
    mut shutdown: watch::Receiver<bool>,
) {
    state.counters.connection_opened();
    let _guard = ConnGuard(state.counters.clone());
    let control = Arc::new(ConnControl::default());
    let io = ResetOnDrop {
        stream,
        control: control.clone(),
    };
    match state.tls.clone() {
        Some(acceptor) => {
            let handshake = tokio::time::timeout(super::HEADER_READ_TIMEOUT, acceptor.0.accept(io));
            let tls = tokio::select! {
                r = handshake => match r {
                    Ok(Ok(tls)) => tls,
                    // A failed or stalled handshake (a plain-HTTP client, say) ends here.
                    _ => return,
                },
                _ = shutdown.changed() => return,
            };
            serve(TokioIo::new(tls), state, control, shutdown).await
        }
        None => serve(TokioIo::new(io), state, control, shutdown).await,
    }
}

async fn serve<I>(
    io: TokioIo<I>,
    state: Arc<State>,
    control: Arc<ConnControl>,
    mut shutdown: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let ctl = control.clone();
    let h2_streams = state.config.http2_max_concurrent_streams.max(1);
    let svc = service_fn(move |req| handle(state.clone(), ctl.clone(), req));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // A client that never finishes its headers (slowloris) is disconnected.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(super::HEADER_READ_TIMEOUT);
    builder.http2().max_concurrent_streams(h2_streams);
    let conn = builder.serve_connection(io, svc);
    tokio::select! {
        _ = conn => {}
        _ = control.notify.notified() => {}
        _ = shutdown.changed() => {}
    }
}

/// A TCP stream that, when dropped after a reset was asked for, closes with an RST.
struct ResetOnDrop {
    stream: TcpStream,
    control: Arc<ConnControl>,
}

impl Drop for ResetOnDrop {
    fn drop(&mut self) {
        if self.control.reset.load(Ordering::SeqCst) {
            let _ = socket2::SockRef::from(&self.stream).set_linger(Some(Duration::ZERO));
        }
    }
}

impl AsyncRead for ResetOnDrop {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResetOnDrop {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
