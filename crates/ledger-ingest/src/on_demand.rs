//! `POST /v1/sync/{provider}/customers/{account_id}`: re-reads one customer's objects at the
//! provider now and imports them through the writer (inbox source `sync`; docs/api.md,
//! docs/connectors.md "On-demand sync").
//!
//! Answers, each JSON:
//! - 200 `{"appended", "duplicate", "ignored", "stale", "failed", "waiting", "unreadable",
//!   "objects", "global_positions", "complete", "correlation_id"}`: the counts per outcome of
//!   the objects read, the positions appended (empty: nothing changed), and whether every list
//!   was read whole (at most `ledger_sync::ON_DEMAND_PAGES_MAX` pages each);
//! - 401 / 403 / 429: no or an unknown token, a token without `commands:write`, over its rate
//!   limit (the same `CommandReply { rejected }` as the command endpoints);
//! - 404 `unknown_provider` (not `stripe`, `paypal` or `xendit`), `unknown_account` (the
//!   provider does not know the customer, or the id cannot be one of its ids);
//! - 501 `not_configured` (the provider's API key is not set on ingest: the variable is
//!   named) or `not_supported` (PayPal and Xendit: not built);
//! - 502 `provider_failed` (the provider refused ingest's key or kept failing), 503
//!   `busy` (more than [`ON_DEMAND_CONCURRENT_MAX`] in flight) or `writer_unavailable`, each
//!   with `Retry-After`; 504 `timeout` after [`ON_DEMAND_SECONDS_MAX`] (what was imported
//!   until then stays: a repeat appends only the rest).

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::{AUTHORIZATION, RETRY_AFTER};
use actix_web::{HttpRequest, HttpResponse, web};
use ledger_access::{Access, Scope};
use ledger_bus::{Client, Encoding};
use ledger_sync::{StripeReader, SyncError};
use tokio::sync::Semaphore;

use crate::reply::IngestError;

/// The longest an on-demand sync may take, in seconds.
pub const ON_DEMAND_SECONDS_MAX: u64 = 30;
/// On-demand syncs in flight at most (each reads the provider and sends to the writer).
pub const ON_DEMAND_CONCURRENT_MAX: usize = 4;
/// What `Retry-After` says on 502 / 503, in seconds.
const RETRY_AFTER_SECONDS: u64 = 5;
/// The request body is not read; anything larger is refused.
const BODY_BYTES_MAX: usize = 1_024;

/// What the route needs: Stripe's API (`None`: not configured) and the in-flight cap.
#[derive(Debug)]
struct OnDemandState {
    stripe: Option<StripeReader>,
    permits: Semaphore,
}

pub(crate) fn configure(
    config: &mut web::ServiceConfig,
    client: Client,
    access: Access,
    stripe: Option<StripeReader>,
) {
    let state = web::Data::new(Arc::new(OnDemandState {
        stripe,
        permits: Semaphore::new(ON_DEMAND_CONCURRENT_MAX),
    }));
    config.service(
        web::resource("/v1/sync/{provider}/customers/{account_id}")
            .app_data(web::Data::new(client))
            .app_data(web::Data::new(access))
            .app_data(web::PayloadConfig::new(BODY_BYTES_MAX))
            .app_data(state)
            .route(web::post().to(sync_customer)),
    );
}

fn refusal(status: StatusCode, code: &str, message: String) -> HttpResponse {
    let mut response = HttpResponse::build(status);
    if matches!(
        status,
        StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE
    ) {
        response.insert_header((RETRY_AFTER, RETRY_AFTER_SECONDS.to_string()));
    }
    response.json(serde_json::json!({"error": code, "message": message}))
}

async fn sync_customer(
    request: HttpRequest,
    client: web::Data<Client>,
    access: web::Data<Access>,
    state: web::Data<Arc<OnDemandState>>,
) -> HttpResponse {
    let provider = request.match_info().get("provider").unwrap_or_default();
    let account_id = request.match_info().get("account_id").unwrap_or_default();
    if !matches!(provider, "stripe" | "paypal" | "xendit") {
        return refusal(
            StatusCode::NOT_FOUND,
            "unknown_provider",
            "the provider is one of stripe, paypal, xendit".to_owned(),
        );
    }
    let authorization = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    let admitted = access
        .admit(authorization)
        .and_then(|caller| caller.require(Scope::CommandsWrite).map(|()| caller.token));
    let token = match admitted {
        Ok(token) => token,
        Err(denied) => return IngestError::from(denied).into_response(Encoding::Json),
    };
    if provider != "stripe" {
        return refusal(
            StatusCode::NOT_IMPLEMENTED,
            "not_supported",
            format!("on-demand sync reads Stripe only; {provider} is not built"),
        );
    }
    let Some(stripe) = state.stripe.as_ref() else {
        return refusal(
            StatusCode::NOT_IMPLEMENTED,
            "not_configured",
            "on-demand sync of stripe needs LEDGER_STRIPE_API_KEY (or \
             LEDGER_STRIPE_API_KEY_FILE) set for ingest, a key with read access"
                .to_owned(),
        );
    };
    let Ok(_permit) = state.permits.try_acquire() else {
        return refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            format!("{ON_DEMAND_CONCURRENT_MAX} on-demand syncs are already running"),
        );
    };
    let correlation_id = uuid::Uuid::now_v7();
    tracing::info!(provider, account_id, %token, %correlation_id, "on-demand sync");
    let synced = tokio::time::timeout(
        Duration::from_secs(ON_DEMAND_SECONDS_MAX),
        ledger_sync::sync_stripe_customer(stripe, &client, account_id, correlation_id),
    )
    .await;
    match synced {
        Err(_) => refusal(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            format!(
                "the sync took longer than {ON_DEMAND_SECONDS_MAX} s; what was imported stays, \
                 a repeat imports the rest"
            ),
        ),
        Ok(Ok(None)) => refusal(
            StatusCode::NOT_FOUND,
            "unknown_account",
            format!("{provider} does not know customer {account_id:?}"),
        ),
        Ok(Ok(Some(synced))) => {
            let counts = &synced.changes.counts;
            HttpResponse::Ok().json(serde_json::json!({
                "objects": counts.objects,
                "appended": counts.appended,
                "duplicate": counts.duplicate,
                "ignored": counts.ignored,
                "stale": counts.stale,
                "failed": counts.failed,
                "waiting": counts.waiting,
                "unreadable": counts.unreadable,
                "global_positions": synced.changes.global_positions,
                "complete": synced.complete,
                "correlation_id": synced.correlation_id.to_string(),
            }))
        }
        Ok(Err(error @ SyncError::Writer(_))) => refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "writer_unavailable",
            error.to_string(),
        ),
        Ok(Err(error)) => {
            tracing::warn!(provider, account_id, %error, "on-demand sync failed");
            refusal(
                StatusCode::BAD_GATEWAY,
                "provider_failed",
                error.to_string(),
            )
        }
    }
}
