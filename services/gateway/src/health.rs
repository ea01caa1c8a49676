//! `/healthz`: the process is up. `/readyz`: every dependency this process needs is usable.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use actix_web::{HttpResponse, get, web};
use futures::future::{BoxFuture, join_all};
use serde::Serialize;

use crate::AppState;

/// One dependency check. The error text is short and meant for operators (no internals, no data).
pub type ProbeFuture = BoxFuture<'static, Result<(), String>>;

#[derive(Clone)]
pub struct ReadinessCheck {
    pub name: &'static str,
    check: Arc<dyn Fn() -> ProbeFuture + Send + Sync>,
}

impl ReadinessCheck {
    pub fn new(
        name: &'static str,
        check: impl Fn() -> ProbeFuture + Send + Sync + 'static,
    ) -> Self {
        Self {
            name,
            check: Arc::new(check),
        }
    }
}

/// A check that takes longer than this counts as failed.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(healthz).service(readyz);
}

#[get("/healthz")]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

#[derive(Serialize)]
struct Readiness {
    status: &'static str,
    checks: BTreeMap<&'static str, String>,
}

#[get("/readyz")]
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let results = join_all(state.readiness.iter().map(|probe| async move {
        let outcome = match tokio::time::timeout(PROBE_TIMEOUT, (probe.check)()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(reason),
            Err(_) => Err("timed out".to_owned()),
        };
        (probe.name, outcome)
    }))
    .await;
    let ready = results.iter().all(|(_, r)| r.is_ok());
    let checks = results
        .into_iter()
        .map(|(name, r)| (name, r.err().unwrap_or_else(|| "ok".to_owned())))
        .collect();
    let body = Readiness {
        status: if ready { "ready" } else { "not_ready" },
        checks,
    };
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        tracing::info!(checks = ?body.checks, "not ready");
        HttpResponse::ServiceUnavailable().json(body)
    }
}
