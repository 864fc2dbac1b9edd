//! The response body: a complete buffer, or the chunks of a watch stream.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::sync::mpsc;

/// Body of every response of the embedded server.
#[derive(Debug)]
pub(crate) struct ResponseBody(Inner);

#[derive(Debug)]
enum Inner {
    Full(Option<Bytes>),
    Stream(mpsc::Receiver<Bytes>),
}

impl ResponseBody {
    pub(crate) fn full(bytes: impl Into<Bytes>) -> Self {
        ResponseBody(Inner::Full(Some(bytes.into())))
    }

    pub(crate) fn stream(rx: mpsc::Receiver<Bytes>) -> Self {
        ResponseBody(Inner::Stream(rx))
    }

    /// A stream that ends after `after` (an injected watch cut); a full body is left as it is.
    pub(crate) fn cut_after(self, after: std::time::Duration) -> Self {
        let Inner::Stream(mut rx) = self.0 else {
            return self;
        };
        let (tx, out) = mpsc::channel(16);
        tokio::spawn(async move {
            let deadline = tokio::time::sleep(after);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    _ = &mut deadline => break,
                    chunk = rx.recv() => {
                        let Some(c) = chunk else { break };
                        if tx.send(c).await.is_err() {
                            break;
                        }
                    }
                }
            }
        });
        ResponseBody(Inner::Stream(out))
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match &mut self.0 {
            Inner::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Inner::Stream(rx) => rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.0, Inner::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Inner::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Inner::Full(None) => SizeHint::with_exact(0),
            Inner::Stream(_) => SizeHint::default(),
        }
    }
}
