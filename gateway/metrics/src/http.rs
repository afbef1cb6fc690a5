use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tracing::debug;

async fn answer(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            crate::render(),
        ),
        (&Method::GET, "/healthz") => (StatusCode::OK, "text/plain; charset=utf-8", "ok\n".into()),
        (&Method::GET, "/readyz") if crate::is_ready() => (
            StatusCode::OK,
            "text/plain; charset=utf-8",
            "ready\n".into(),
        ),
        // Not yet serving, or draining after SIGTERM: send new clients elsewhere.
        (&Method::GET, "/readyz") => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8",
            "not ready: starting or draining\n".into(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found: try /metrics, /healthz or /readyz\n".into(),
        ),
    };
    Ok(Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("valid response"))
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                debug!(error = %e, "metrics endpoint: accept failed");
                continue;
            }
        };
        tokio::spawn(async move {
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(answer))
                .await
            {
                debug!(error = %e, %peer, "metrics endpoint: connection ended");
            }
        });
    }
}
