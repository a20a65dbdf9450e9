//! The metrics and health endpoint (HTTP/1.1, hyper): `GET /metrics` in Prometheus text
//! format, `GET /health` answering 200 "ok", or 503 with the reason when the Db refuses
//! writes (its log is poisoned, or it opened read-only). Anything else is 404.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::backend::Backend;
use crate::server::Shared;

/// How long one HTTP connection may take to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves the endpoint on `listener` until the process exits.
pub async fn serve<B: Backend>(shared: Arc<Shared<B>>, listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let shared = Arc::clone(&shared);
                async move {
                    let response = answer(&shared, request.method(), request.uri().path()).await;
                    Ok::<_, Infallible>(response)
                }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(error) = connection.await {
                tracing::debug!(%error, "metrics connection failed");
            }
        });
    }
}

async fn answer<B: Backend>(
    shared: &Shared<B>,
    method: &Method,
    path: &str,
) -> Response<Full<Bytes>> {
    if method != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".to_string());
    }
    let (stats, health) = match path {
        "/metrics" | "/health" => {
            match (shared.backend.stats().await, shared.backend.health().await) {
                (Ok(stats), Ok(health)) => (stats, health),
                (Err(error), _) | (_, Err(error)) => {
                    let why = format!("the backend cannot report: {error}\n");
                    return text(StatusCode::INTERNAL_SERVER_ERROR, why);
                }
            }
        }
        _ => {
            let why = "not found: try /metrics or /health\n".to_string();
            return text(StatusCode::NOT_FOUND, why);
        }
    };
    match path {
        "/metrics" => {
            let body = shared
                .metrics
                .render(&stats, health.writes_refused.is_some());
            let mut response = text(StatusCode::OK, body);
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        _ => match health.writes_refused {
            None => text(StatusCode::OK, "ok\n".to_string()),
            Some(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("unhealthy: {why}\n"),
            ),
        },
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

    use super::*;
    use crate::backend::tests::FakeBackend;

    #[tokio::test]
    async fn health_turns_unhealthy_when_writes_are_refused() {
        let shared = Shared::for_tests(FakeBackend::default());
        assert_eq!(
            answer(&shared, &Method::GET, "/health").await.status(),
            StatusCode::OK
        );
        *shared.backend.writes_refused.lock() = Some("the log is poisoned: fsync failed".into());
        let unhealthy = answer(&shared, &Method::GET, "/health").await;
        assert_eq!(unhealthy.status(), StatusCode::SERVICE_UNAVAILABLE);
        let metrics = answer(&shared, &Method::GET, "/metrics").await;
        assert_eq!(metrics.status(), StatusCode::OK);
        assert_eq!(
            answer(&shared, &Method::POST, "/metrics").await.status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
        let body = shared
            .metrics
            .render(&shared.backend.stats().await.unwrap(), true);
        assert!(body.contains("popdb_writes_refused 1"), "{body}");
    }
}
