//! The HTTP endpoints: `/` (the status page, [`page`]), `/metrics`,
//! `/healthz`, `/readyz`, `/status`. Every one of them only reads.

pub mod page;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::status::Board;

#[derive(Clone)]
struct Shared {
    metrics: Metrics,
    board: Arc<Board>,
    /// `/readyz` turns 503 when the primary has failed for longer than this.
    grace: Duration,
}

fn router(shared: Shared) -> Router {
    Router::new()
        .route("/", get(status_page))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .with_state(shared)
}

/// Rendering 10,000 targets takes milliseconds of CPU: done on the blocking
/// pool, so that it never delays the probes of the worker it would run on.
async fn metrics(State(s): State<Shared>) -> Response {
    match tokio::task::spawn_blocking(move || s.metrics.render()).await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn readyz(State(s): State<Shared>) -> Response {
    if s.board.is_ready(s.grace) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

/// Copied and serialized on the blocking pool too (10,000 targets: ~3 MB).
async fn status(State(s): State<Shared>) -> Response {
    let json = tokio::task::spawn_blocking(move || serde_json::to_vec(&s.board.status(s.grace)));
    match json.await {
        Ok(Ok(body)) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        _ => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// The status page, or with `?fragment=1` its live part. Built from a copy
/// of the board on the blocking pool, like `/status`: a page of 10,000
/// targets is a few MB of HTML.
async fn status_page(State(s): State<Shared>, RawQuery(query): RawQuery) -> Response {
    let fragment = query.as_deref().is_some_and(page::wants_fragment);
    let html = tokio::task::spawn_blocking(move || {
        let status = s.board.status(s.grace);
        let views = page::Views::of(&status);
        let data = views.data(&status, std::time::SystemTime::now());
        if fragment {
            page::fragment(&data)
        } else {
            page::page(&data)
        }
    });
    match html.await {
        Ok(body) => (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (
                    header::CONTENT_SECURITY_POLICY,
                    page::content_security_policy(),
                ),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                (header::CACHE_CONTROL, "no-store"),
                (header::REFERRER_POLICY, "no-referrer"),
            ],
            body,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Serves until `shutdown` on an already bound listener (binding early lets
/// the daemon report a busy port before it says READY).
pub async fn serve(
    listener: TcpListener,
    metrics: Metrics,
    board: Arc<Board>,
    grace: Duration,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = router(Shared {
        metrics,
        board,
        grace,
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
