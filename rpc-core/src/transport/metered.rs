//! A connection's bytes and its life in the [`Metrics`] of its client or server: [`Counted`] wraps each half of
//! its stream and counts what it reads and writes, and [`Open`] counts it as open until dropped. Without
//! metrics a half costs one branch per read or write.

use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::metrics::Metrics;

/// One half of a connection's stream, its bytes counted if there are metrics.
#[derive(Debug)]
pub(crate) struct Counted<S> {
    inner: S,
    metrics: Option<Metrics>,
}

impl<S> Counted<S> {
    pub(crate) fn new(inner: S, metrics: Option<Metrics>) -> Counted<S> {
        Counted { inner, metrics }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    #[inline]
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let (Some(m), Poll::Ready(Ok(()))) = (&self.metrics, &polled) {
            m.received(buf.filled().len() - before);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    #[inline]
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.count(&polled);
        polled
    }

    #[inline]
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.count(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S> Counted<S> {
    #[inline]
    fn count(&self, polled: &Poll<std::io::Result<usize>>) {
        if let (Some(m), Poll::Ready(Ok(n))) = (&self.metrics, polled) {
            m.sent(*n);
        }
    }
}

/// A connection counted as open until dropped.
#[derive(Debug)]
pub(crate) struct Open(Option<Metrics>);

impl Open {
    pub(crate) fn new(metrics: Option<Metrics>) -> Open {
        if let Some(m) = &metrics {
            m.connection_opened();
        }
        Open(metrics)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        if let Some(m) = &self.0 {
            m.connection_closed();
        }
    }
}
