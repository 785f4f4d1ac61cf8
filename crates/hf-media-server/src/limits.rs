//! The generations in flight across every client: a fixed number of slots, taken before a generation
//! starts and given back when it ends (or is cancelled). A request that finds too few free slots is
//! answered 429 at once, with `Retry-After`: the server never queues without bound.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::ServerError;

/// How long a client asked to wait for a slot is told to wait.
const BUSY_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The slots.
#[derive(Debug)]
pub(crate) struct Slots {
    semaphore: Arc<Semaphore>,
    max: usize,
}

/// Slots held by one request; given back when dropped.
#[derive(Debug)]
pub(crate) struct Held {
    _permit: OwnedSemaphorePermit,
}

impl Slots {
    pub fn new(max: usize) -> Self {
        Slots {
            semaphore: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// Takes `count` slots at once, or answers why not.
    pub fn take(&self, count: usize) -> Result<Held, ServerError> {
        let busy = || ServerError::Busy {
            in_flight: self.in_flight(),
            max: self.max,
            retry_after: BUSY_RETRY_AFTER,
        };
        let count = u32::try_from(count).map_err(|_| busy())?;
        if count as usize > self.max {
            return Err(ServerError::bad_request(
                format!(
                    "this server runs at most {} generations at once; ask for fewer",
                    self.max
                ),
                "n",
            ));
        }
        match self.semaphore.clone().try_acquire_many_owned(count) {
            Ok(permit) => Ok(Held { _permit: permit }),
            Err(_) => Err(busy()),
        }
    }

    /// Generations in flight now.
    pub fn in_flight(&self) -> usize {
        self.max - self.semaphore.available_permits()
    }

    /// The most.
    pub fn max(&self) -> usize {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_given_back_and_never_overbooked() {
        let slots = Slots::new(3);
        let two = slots.take(2).unwrap();
        assert_eq!(slots.in_flight(), 2);
        let refused = slots.take(2).unwrap_err();
        assert!(
            matches!(
                refused,
                ServerError::Busy {
                    in_flight: 2,
                    max: 3,
                    ..
                }
            ),
            "{refused:?}"
        );
        let one = slots.take(1).unwrap();
        assert_eq!(slots.in_flight(), 3);
        drop(two);
        drop(one);
        assert_eq!(slots.in_flight(), 0);
        assert!(matches!(slots.take(4), Err(ServerError::BadRequest { .. })));
    }
}
