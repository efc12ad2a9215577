//! [`Stream`]: the state of any stream, a customer's or an integration's, for the writer.

use crate::customer::{Customer, evolve};
use crate::decide::decide;
use crate::integration::{
    Integration, decide_integration, evolve_integration, is_integration_command,
    is_integration_event,
};
use crate::rejection::Rejection;
use crate::unique::{UniqueKeyChanges, unique_key_changes};
use crate::{Event, command_name, proto};

/// One stream's state. A stream's first event decides its aggregate; a new stream takes the
/// aggregate of the command that starts it. Commands for the other aggregate are refused with
/// [`Rejection::WrongStream`].
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Stream {
    /// No events yet.
    #[default]
    Empty,
    Customer(Customer),
    Integration(Integration),
}

impl Stream {
    /// An estimate of the memory the state holds, in bytes ([`Customer::approximate_bytes`]).
    pub fn approximate_bytes(&self) -> usize {
        match self {
            Stream::Customer(customer) => customer.approximate_bytes(),
            Stream::Empty | Stream::Integration(_) => size_of::<Stream>(),
        }
    }

    /// Folds `events`, each with its business time (Unix microseconds), into an empty stream
    /// with [`Stream::evolve`].
    pub fn from_events<'a>(events: impl IntoIterator<Item = (i64, &'a Event)>) -> Stream {
        events
            .into_iter()
            .fold(Stream::Empty, |stream, (occurred_at_unix_micros, event)| {
                stream.evolve(event, occurred_at_unix_micros)
            })
    }

    /// The number of events applied.
    pub fn version(&self) -> u64 {
        match self {
            Stream::Empty => 0,
            Stream::Customer(customer) => customer.version,
            Stream::Integration(integration) => integration.version,
        }
    }

    /// [`decide`] or [`decide_integration`], whichever aggregate the stream (or, when empty,
    /// the command) belongs to.
    pub fn decide(&self, command: &proto::Command) -> Result<Vec<Event>, Rejection> {
        let kind = command
            .kind
            .as_ref()
            .ok_or(Rejection::MissingField { field: "kind" })?;
        let for_integration = is_integration_command(kind);
        match self {
            Stream::Empty if for_integration => {
                decide_integration(&Integration::default(), command)
            }
            Stream::Empty => decide(&Customer::default(), command),
            Stream::Customer(customer) if !for_integration => decide(customer, command),
            Stream::Integration(integration) if for_integration => {
                decide_integration(integration, command)
            }
            Stream::Customer(_) | Stream::Integration(_) => Err(Rejection::WrongStream {
                stream: if for_integration {
                    "customer"
                } else {
                    "integration"
                },
                command: command_name(kind),
            }),
        }
    }

    /// Applies one event that happened at `occurred_at_unix_micros` ([`evolve`], or
    /// [`evolve_integration`], which has no use for the time).
    pub fn evolve(self, event: &Event, occurred_at_unix_micros: i64) -> Stream {
        match self {
            Stream::Empty if is_integration_event(event) => {
                Stream::Integration(evolve_integration(Integration::default(), event))
            }
            Stream::Empty => {
                Stream::Customer(evolve(Customer::default(), event, occurred_at_unix_micros))
            }
            Stream::Customer(customer) => {
                Stream::Customer(evolve(customer, event, occurred_at_unix_micros))
            }
            Stream::Integration(integration) => {
                Stream::Integration(evolve_integration(integration, event))
            }
        }
    }

    /// The unique keys appending `events` claims and releases (integrations claim none).
    pub fn unique_key_changes(&self, events: &[Event]) -> UniqueKeyChanges {
        match self {
            Stream::Empty => unique_key_changes(&Customer::default(), events),
            Stream::Customer(customer) => unique_key_changes(customer, events),
            Stream::Integration(_) => UniqueKeyChanges::default(),
        }
    }
}
