//! A projector and the worker that acts on what it records (notify's deliveries,
//! provider-sync's calls), run side by side in one process.

use std::future::Future;

use tokio::sync::watch;

/// Completes when [`alongside`] stops its two tasks: pass [`Stop::wait`] as their shutdown.
#[derive(Debug, Clone)]
pub struct Stop(watch::Receiver<bool>);

impl Stop {
    /// Waits until both tasks are told to stop.
    pub async fn wait(mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

/// Runs `projecting` and `working` until `shutdown` completes or either of them returns (or
/// fails): then the other is told to stop too, through the [`Stop`] each was given. Returns
/// both results once both have returned.
pub async fn alongside<P: Future, W: Future>(
    shutdown: impl Future<Output = ()>,
    projecting: impl FnOnce(Stop) -> P,
    working: impl FnOnce(Stop) -> W,
) -> (P::Output, W::Output) {
    let (stop, stopped) = watch::channel(false);
    let projecting = async {
        let result = projecting(Stop(stopped.clone())).await;
        let _ = stop.send(true);
        result
    };
    let working = async {
        let result = working(Stop(stopped.clone())).await;
        let _ = stop.send(true);
        result
    };
    let signal = async {
        tokio::select! {
            () = shutdown => {}
            () = Stop(stopped.clone()).wait() => {}
        }
        let _ = stop.send(true);
    };
    let (projected, worked, ()) = tokio::join!(projecting, working, signal);
    (projected, worked)
}
