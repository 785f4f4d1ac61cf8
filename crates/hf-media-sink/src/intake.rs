//! Bookkeeping shared by the sinks while a stream is consumed: byte count,
//! size limit, and early signature check.

use crate::error::hex_head;
use crate::format::{SNIFF_LEN, sniff};
use crate::{MediaFormat, SinkError};

/// Watches the chunks of one media as they arrive.
#[derive(Debug)]
pub(crate) struct Intake {
    head: Vec<u8>,
    total: u64,
    limit: u64,
    format: Option<MediaFormat>,
}

impl Intake {
    pub(crate) fn new(limit: u64) -> Self {
        Self {
            head: Vec::with_capacity(SNIFF_LEN),
            total: 0,
            limit,
            format: None,
        }
    }

    /// Accounts for `chunk`. Fails as soon as the limit is exceeded, or as soon
    /// as enough bytes arrived to tell that they are not a known media.
    pub(crate) fn accept(&mut self, chunk: &[u8]) -> Result<(), SinkError> {
        let len = u64::try_from(chunk.len()).unwrap_or(u64::MAX);
        self.total = self.total.saturating_add(len);
        if self.total > self.limit {
            return Err(SinkError::TooLarge { limit: self.limit });
        }
        if self.head.len() < SNIFF_LEN {
            let take = (SNIFF_LEN - self.head.len()).min(chunk.len());
            self.head.extend_from_slice(&chunk[..take]);
            if self.head.len() == SNIFF_LEN {
                self.format = Some(self.sniff()?);
            }
        }
        Ok(())
    }

    /// Bytes accepted so far.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// The stream ended: decides the format.
    pub(crate) fn finish(&self) -> Result<MediaFormat, SinkError> {
        if self.total == 0 {
            return Err(SinkError::Empty);
        }
        match self.format {
            Some(format) => Ok(format),
            None => self.sniff(),
        }
    }

    fn sniff(&self) -> Result<MediaFormat, SinkError> {
        sniff(&self.head).ok_or_else(|| SinkError::UnrecognizedMedia {
            head: hex_head(&self.head),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_is_empty() {
        let intake = Intake::new(10);
        assert!(matches!(intake.finish(), Err(SinkError::Empty)));
        let mut intake = Intake::new(10);
        intake.accept(b"").expect("empty chunk");
        assert!(matches!(intake.finish(), Err(SinkError::Empty)));
    }

    #[test]
    fn limit_is_inclusive() {
        let mut intake = Intake::new(8);
        intake.accept(b"\x89PNG").expect("4");
        intake.accept(b"\r\n\x1a\n").expect("8 == limit");
        assert!(matches!(intake.accept(b"x"), Err(SinkError::TooLarge { limit: 8 })));
    }

    #[test]
    fn garbage_is_rejected_early() {
        let mut intake = Intake::new(u64::MAX);
        let html = vec![b'<'; SNIFF_LEN - 1];
        intake.accept(&html).expect("not enough to decide yet");
        match intake.accept(b"<<<<") {
            Err(SinkError::UnrecognizedMedia { head }) => assert!(head.starts_with("3c 3c")),
            other => panic!("expected UnrecognizedMedia, got {other:?}"),
        }
    }

    #[test]
    fn head_spanning_chunks_is_sniffed() {
        let mut intake = Intake::new(u64::MAX);
        for byte in b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR" {
            intake.accept(&[*byte]).expect("byte");
        }
        let format = intake.finish().expect("png");
        assert_eq!(format.extension, "png");
        assert_eq!(intake.total(), 16);
    }
}
