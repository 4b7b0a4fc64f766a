//! How long each gRPC call takes to be answered (to its response's headers: for a streamed
//! checkpoint, to the stream's start), observed per method into the dashboard's `/metrics`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tower::{Layer, Service};

use crate::dashboard::metrics::RpcTimes;

#[derive(Clone)]
pub struct RpcTiming {
    times: RpcTimes,
}

impl RpcTiming {
    pub fn new(times: RpcTimes) -> Self {
        Self { times }
    }
}

impl<S> Layer<S> for RpcTiming {
    type Service = Timed<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Timed { inner, times: self.times.clone() }
    }
}

#[derive(Clone)]
pub struct Timed<S> {
    inner: S,
    times: RpcTimes,
}

impl<S, B> Service<http::Request<B>> for Timed<S>
where
    S: Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // `/sal_sweep.v1.Coordinator/Lease` -> `Lease`: a label of bounded values.
        let method = request.uri().path().rsplit('/').next().unwrap_or("").to_string();
        let (times, started) = (self.times.clone(), Instant::now());
        let answer = self.inner.call(request);
        Box::pin(async move {
            let outcome = answer.await;
            times.observe(&method, started.elapsed().as_secs_f64());
            outcome
        })
    }
}
