//! Staying up through outages of PostgreSQL or NATS (docs/decisions/0020-staying-up.md): one
//! backoff policy for every long-running component, and a log that speaks once per change of
//! state instead of once per attempt.

use std::future::Future;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// First wait after a failure.
pub const RETRY_DELAY_MIN: Duration = Duration::from_millis(250);
/// Longest wait between two attempts, however long the outage.
pub const RETRY_DELAY_MAX: Duration = Duration::from_secs(10);

/// Waits between attempts to get a component going again: exponential from
/// [`RETRY_DELAY_MIN`], doubled per failure, capped at [`RETRY_DELAY_MAX`], each wait plus up to
/// 100 % random jitter (so processes that lost the same server do not return in step), never
/// giving up. [`Retry::succeeded`] starts over from the first wait.
#[derive(Debug)]
pub struct Retry {
    component: &'static str,
    delays: ExponentialBackoff,
    failing: bool,
}

impl Retry {
    /// The retry of `component` (`writer`, `projector revenue`, ...), named in its logs.
    pub fn new(component: &'static str) -> Retry {
        Retry {
            component,
            delays: delays(),
            failing: false,
        }
    }

    /// Whether the last attempt failed (the component is down).
    pub fn failing(&self) -> bool {
        self.failing
    }

    /// Records a failed attempt: logs the first failure after a success as a warning (later
    /// ones only at debug level), and returns how long to wait before the next one.
    pub fn failed(&mut self, error: &dyn std::fmt::Display) -> Duration {
        let delay = self.delays.next().unwrap_or(RETRY_DELAY_MAX);
        if self.failing {
            tracing::debug!(component = self.component, %error, delay_ms = delay.as_millis(), "still failing; retrying");
        } else {
            self.failing = true;
            tracing::warn!(
                component = self.component,
                %error,
                "failed; retrying with backoff until it works (logged again once it does)"
            );
        }
        delay
    }

    /// Records a success: logs the recovery if the component was failing, and resets the
    /// backoff.
    pub fn succeeded(&mut self) {
        if self.failing {
            self.failing = false;
            tracing::info!(component = self.component, "recovered");
        }
        self.delays = delays();
    }
}

/// Runs `attempt` until it ends well or with an error `needs_operator` flags, starting it again
/// after every other error with [`Retry`]'s backoff. Each attempt gets an [`Attempt`]: it
/// calls [`Attempt::up`] once it is working (which logs a recovery and resets the backoff), and
/// [`Attempt::stopped`] completes on `shutdown`, which also ends the waiting.
///
/// # Errors
///
/// The first error `needs_operator` flags: a configuration error or one that needs a person.
pub async fn supervise<E, F, Fut>(
    component: &'static str,
    shutdown: impl Future<Output = ()>,
    mut attempt: F,
    needs_operator: impl Fn(&E) -> bool,
) -> Result<(), E>
where
    E: std::fmt::Display,
    F: FnMut(Attempt) -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let up = std::sync::Arc::new(tokio::sync::Notify::new());
    let supervised = async {
        let mut retry = Retry::new(component);
        loop {
            let running = attempt(Attempt {
                stopped: stopped.clone(),
                up: up.clone(),
            });
            tokio::pin!(running);
            let outcome = loop {
                tokio::select! {
                    outcome = &mut running => break outcome,
                    () = up.notified() => retry.succeeded(),
                }
            };
            match outcome {
                Ok(()) => return Ok(()),
                Err(error) if needs_operator(&error) => return Err(error),
                Err(error) => {
                    if *stopped.borrow() {
                        return Ok(());
                    }
                    let delay = retry.failed(&error);
                    drop(error);
                    let mut stopping = stopped.clone();
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        _ = stopping.wait_for(|stopped| *stopped) => return Ok(()),
                    }
                }
            }
        }
    };
    tokio::pin!(shutdown, supervised);
    tokio::select! {
        outcome = &mut supervised => outcome,
        () = &mut shutdown => {
            stop.send_replace(true);
            supervised.await
        }
    }
}

/// One attempt of [`supervise`]: how it reports that it works, and learns that it should stop.
#[derive(Debug, Clone)]
pub struct Attempt {
    stopped: tokio::sync::watch::Receiver<bool>,
    up: std::sync::Arc<tokio::sync::Notify>,
}

impl Attempt {
    /// The component works (connected, leading, serving): logs the recovery after failures
    /// and resets the backoff.
    pub fn up(&self) {
        self.up.notify_one();
    }

    /// Completes once shutdown was asked for.
    pub async fn stopped(mut self) {
        // An error means the sender is gone: [`supervise`] itself ended, so stop too.
        let _ = self.stopped.wait_for(|stopped| *stopped).await;
    }
}

fn delays() -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(RETRY_DELAY_MIN)
        .with_max_delay(RETRY_DELAY_MAX)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_cap_and_never_end() {
        let waits: Vec<Duration> = delays().take(20).collect();
        assert_eq!(waits.len(), 20);
        assert!(waits[0] >= RETRY_DELAY_MIN && waits[0] <= RETRY_DELAY_MIN * 2);
        for wait in &waits {
            assert!(
                *wait <= RETRY_DELAY_MAX * 2,
                "{wait:?} exceeds the cap plus jitter"
            );
        }
        assert!(
            waits[19] >= RETRY_DELAY_MAX,
            "{:?} never reached the cap",
            waits[19]
        );
    }
}
