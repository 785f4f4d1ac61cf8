//! The progress percentage a client sees (a streaming image's partial events, a video's `progress`),
//! from what the generation reports. Providers say where a job stands (queued, running), not how far it
//! is, so the percentage marks stages: accepted 5, queued 10, running 50, stored 100.

/// A job the provider accepted and has not reported on yet.
pub(crate) const ACCEPTED: u8 = 5;
/// A made and stored media.
pub(crate) const COMPLETED: u8 = 100;

/// The progress of a job in the provider's state `state` (`queued`, `in_progress`, or the provider's
/// own word).
pub(crate) fn progress_of(state: &str) -> u8 {
    match state {
        "queued" | "pending" | "starting" | "IN_QUEUE" => 10,
        "in_progress" | "processing" | "running" | "IN_PROGRESS" => 50,
        "completed" | "succeeded" | "COMPLETED" => 95,
        _ => 25,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_only_move_forward() {
        assert!(ACCEPTED < progress_of("queued"));
        assert!(progress_of("queued") < progress_of("in_progress"));
        assert!(progress_of("in_progress") < progress_of("completed"));
        assert!(progress_of("completed") < COMPLETED);
    }
}
