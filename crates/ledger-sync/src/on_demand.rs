//! On-demand sync of one customer (`POST /v1/sync/stripe/customers/{account_id}` on ingest,
//! docs/connectors.md, "On-demand sync"): the customer's objects read at Stripe now and
//! imported through the writer with inbox source `sync` ([`crate::resync`]).

use ledger_bus::Client;
use ledger_connectors::stripe::ListedKind;
use serde_json::Value;
use uuid::Uuid;

use crate::SyncError;
use crate::resync::{Changes, Pages, Resync, now_unix_seconds, reimport, stripe_id};
use crate::stripe_api::StripeReader;

/// Pages (of [`crate::PAGE_LIMIT`] objects) read at most per list of one customer: a request
/// stays bounded; the answer says when a list had more.
pub const ON_DEMAND_PAGES_MAX: u64 = 5;

/// What an on-demand sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OnDemand {
    pub changes: Changes,
    /// False when a list had more than [`ON_DEMAND_PAGES_MAX`] pages (the rest was not read).
    pub complete: bool,
    /// Also the correlation id of the deliveries and of the events they led to.
    pub correlation_id: Uuid,
}

/// Reads Stripe customer `account_id` (`GET /v1/customers/{id}`), then its subscriptions
/// (every status), invoices and charges (`?customer=`), in that order, and imports each.
/// `Ok(None)` when Stripe does not know the customer (404, or deleted) or `account_id` cannot
/// be a Stripe id.
///
/// # Errors
/// As [`StripeReader::page`] and the writer.
pub async fn sync_stripe_customer(
    reader: &StripeReader,
    client: &Client,
    account_id: &str,
    correlation_id: Uuid,
) -> Result<Option<OnDemand>, SyncError> {
    if !stripe_id(account_id) {
        return Ok(None);
    }
    let path = format!("/v1/customers/{account_id}");
    let Some(customer) = reader.object(&path).await? else {
        return Ok(None);
    };
    if customer.get("deleted").and_then(Value::as_bool) == Some(true) {
        return Ok(None);
    }
    let read_at = now_unix_seconds();
    let mut on_demand = OnDemand {
        complete: true,
        correlation_id,
        ..OnDemand::default()
    };
    on_demand.changes.add(
        reimport(
            client,
            Resync::OnDemand,
            ListedKind::Customer,
            &customer,
            read_at,
            "",
            correlation_id,
        )
        .await?,
    );
    for kind in [
        ListedKind::Subscription,
        ListedKind::Invoice,
        ListedKind::Charge,
    ] {
        let mut pages = Pages::new(kind, vec![("customer", account_id.to_owned())]);
        let mut read = 0;
        while let Some(objects) = pages.next(reader).await? {
            read += 1;
            for object in &objects {
                on_demand.changes.add(
                    reimport(
                        client,
                        Resync::OnDemand,
                        kind,
                        object,
                        read_at,
                        "",
                        correlation_id,
                    )
                    .await?,
                );
            }
            if read == ON_DEMAND_PAGES_MAX {
                on_demand.complete = !pages.has_more();
                break;
            }
        }
    }
    Ok(Some(on_demand))
}
