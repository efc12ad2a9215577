//! `ledger demo --stripe-api-base URL`: the demo connected to a Stripe API (Stripe's test
//! mode, or localstripe as in the dashboard's browser test, `e2e/`). Provider-sync runs in the
//! demo and carries the dashboard's cancellations out at that API (docs/connectors.md,
//! "Outbound: provider-sync"), and the demo's ingest takes Stripe's signed webhooks at
//! `POST /v1/webhooks/stripe`, so customers and subscriptions made at that API reach the
//! ledger, and the API's own news about them too.
//!
//! The secrets come from the environment, as for `ledger run provider-sync` and `ledger run
//! ingest`: the API key `LEDGER_STRIPE_API_KEY` and the webhook endpoint's signing secrets
//! `LEDGER_STRIPE_WEBHOOK_SECRETS` (or their `_FILE` variables), never from the command line.
//!
//! The demo's own history is what the providers reported (issuer `payment_provider`) apart
//! from the registrations, so provider-sync has nothing of it to carry out: only what an
//! operator asks from the dashboard reaches the API. The demo's Stripe customers
//! (`cus_demo000042`, subscription `sub_main`) exist only in the ledger, so the API refuses a
//! cancellation of theirs (404), which the dashboard shows as `failed` with the API's reason.

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use ledger_ingest::WebhookConfig;
use provider_sync::{ApiSecret, ProviderApis, StripeApi, SyncConfig};
use tokio::task::JoinHandle;

use crate::ingest::credential;
use crate::provider_sync::{CONCURRENT_REQUESTS_DEFAULT, REQUEST_TIMEOUT_MS_DEFAULT};

/// A Stripe API the demo is connected to: checked, not yet running.
pub(crate) struct StripeConnection {
    apis: ProviderApis,
    /// The demo's ingest's webhook endpoints: Stripe's, and any other configured in the
    /// environment as for `ledger run ingest`.
    pub(crate) webhooks: WebhookConfig,
    /// The API's base URL, for the printed summary.
    pub(crate) api_base: String,
}

impl StripeConnection {
    /// Reads the key and the webhook secrets and checks that `api_base` answers HTTP.
    ///
    /// # Errors
    /// A missing key or webhook secret (naming the variable to set), a base that is not an
    /// `http(s)://` URL, or one that does not answer.
    pub(crate) async fn connect(api_base: &str) -> anyhow::Result<StripeConnection> {
        let api_key = credential("LEDGER_STRIPE_API_KEY")?.context(
            "--stripe-api-base needs the API's secret key in LEDGER_STRIPE_API_KEY (or \
             LEDGER_STRIPE_API_KEY_FILE); localstripe takes any sk_test_... key",
        )?;
        let webhooks = crate::ingest::webhooks()?;
        anyhow::ensure!(
            webhooks.stripe.is_some(),
            "--stripe-api-base needs the secret the API signs its webhooks to the demo's ingest \
             with, in LEDGER_STRIPE_WEBHOOK_SECRETS (or LEDGER_STRIPE_WEBHOOK_SECRETS_FILE)"
        );
        let api_base = api_base.trim_end_matches('/').to_owned();
        let apis = ProviderApis::new(
            Some(StripeApi {
                api_base: api_base.clone(),
                api_key: ApiSecret::new(api_key),
            }),
            None,
            None,
            Duration::from_millis(REQUEST_TIMEOUT_MS_DEFAULT),
            usize::try_from(CONCURRENT_REQUESTS_DEFAULT).unwrap_or(1),
        )
        .context("--stripe-api-base")?;
        apis.check_reachable().await.context("--stripe-api-base")?;
        Ok(StripeConnection {
            apis,
            webhooks,
            api_base,
        })
    }

    /// Runs provider-sync (its projector and worker, `SyncConfig::default()`) on the demo's
    /// database and stream until `stop` completes.
    pub(crate) fn spawn_provider_sync(
        self,
        database_url: String,
        nats: async_nats::Client,
        config: ledger_projector::ProjectorConfig,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> JoinHandle<anyhow::Result<()>> {
        tokio::spawn(async move {
            provider_sync::run(
                &database_url,
                nats,
                &config,
                self.apis,
                SyncConfig::default(),
                false,
                stop,
                |_| {},
            )
            .await
            .context("the demo's provider-sync stopped")
        })
    }
}
