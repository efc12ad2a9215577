//! The OpenAPI 3 document, generated from the handlers' annotations and the answer types,
//! served at `/v1/openapi.json`.

use actix_web::HttpResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::{customers, error, handlers, messages, revenue};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ledger query API",
        description = "Read models of the billing ledger. Amounts are integer minor units of \
            their currency (`exponent` decimals); dates are ISO 8601. Every /v1 answer carries \
            `X-Ledger-Position`; `?min_position=N` waits up to 5 s for the read model to reach \
            N, then answers 503 `position_not_reached`. Errors: \
            `{\"error\": {\"code\", \"message\", \"details\"}}`."
    ),
    paths(
        customers::list,
        customers::single,
        customers::timeline,
        messages::single,
        revenue::currencies,
        revenue::summary,
        revenue::mrr,
        revenue::churn,
        revenue::cohorts,
        revenue::customer_mrr,
        handlers::healthz,
        handlers::readyz,
    ),
    components(schemas(error::ErrorBody, error::ErrorDetail)),
    modifiers(&BearerAuth),
    tags(
        (name = "customers", description = "Read model `customers`; scope customers:read"),
        (name = "metrics", description = "Read model `revenue`; scope metrics:read"),
        (name = "connectors", description = "Provider webhook deliveries as received; scope connectors:read"),
        (name = "operations", description = "Health and readiness; no token"),
    )
)]
#[derive(Debug)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

/// The document as JSON.
pub fn document() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|error| format!("{{\"error\": \"{error}\"}}"))
}

pub(crate) async fn serve() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document())
}
