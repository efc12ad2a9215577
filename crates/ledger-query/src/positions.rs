//! Where each read model stands: the latest global position its projector committed, learnt
//! from the projector's announcements on `<prefix>.projections.<name>` and, as a backstop for
//! a missed message, from its checkpoint table polled every few seconds.

use std::time::Duration;

use tokio::sync::watch;

use crate::error::ApiError;

/// A read model the service answers from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Projection {
    /// Schema `customers`: the `/v1/customers*` endpoints.
    Customers,
    /// Schema `revenue`: the `/v1/metrics/*` endpoints.
    Revenue,
}

impl Projection {
    pub const ALL: [Projection; 2] = [Projection::Customers, Projection::Revenue];

    /// The projector's name: its schema and the last token of its progress subject.
    pub fn name(self) -> &'static str {
        match self {
            Projection::Customers => "customers",
            Projection::Revenue => "revenue",
        }
    }

    pub fn from_name(name: &str) -> Option<Projection> {
        Projection::ALL
            .into_iter()
            .find(|projection| projection.name() == name)
    }

    fn index(self) -> usize {
        match self {
            Projection::Customers => 0,
            Projection::Revenue => 1,
        }
    }
}

/// The latest known position of every projection; only ever moves forward.
#[derive(Debug)]
pub(crate) struct Positions {
    senders: [watch::Sender<u64>; 2],
}

impl Positions {
    pub(crate) fn new() -> Positions {
        Positions {
            senders: [watch::Sender::new(0), watch::Sender::new(0)],
        }
    }

    pub(crate) fn get(&self, projection: Projection) -> u64 {
        *self.senders[projection.index()].borrow()
    }

    /// Records `position` for `projection`; true when it moved forward.
    pub(crate) fn advance(&self, projection: Projection, position: u64) -> bool {
        let moved = self.senders[projection.index()].send_if_modified(|current| {
            if position > *current {
                *current = position;
                true
            } else {
                false
            }
        });
        if moved {
            crate::metrics::position(projection, position);
        }
        moved
    }

    /// Waits until `projection` reaches `min_position`, at most `wait`.
    pub(crate) async fn wait_for(
        &self,
        projection: Projection,
        min_position: u64,
        wait: Duration,
    ) -> Result<(), ApiError> {
        let mut receiver = self.senders[projection.index()].subscribe();
        let reached = tokio::time::timeout(
            wait,
            receiver.wait_for(|position| *position >= min_position),
        )
        .await;
        match reached {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) | Err(_) => Err(ApiError::PositionNotReached {
                projection: projection.name(),
                requested: min_position,
                current: self.get(projection),
                waited_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            }),
        }
    }
}

/// Parses a progress message: the position as a decimal string.
pub(crate) fn parse_announcement(payload: &[u8]) -> Option<u64> {
    std::str::from_utf8(payload).ok()?.trim().parse().ok()
}
