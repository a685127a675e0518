//! Byte budgets: how much memory peers may make RTMP ingest hold, counted as it is taken and
//! given back when the [`Charge`] that took it is dropped. Pure: atomics, no I/O, no time.
//!
//! One [`ByteBudget`] is shared by every connection (`rtmp.max_ingest_bytes`): partial messages
//! in the parsers and FLV bytes queued towards the pipelines are charged to it, so however many
//! peers there are, ingest never holds more than that. Per-connection and per-publisher bounds
//! are the chunk guard's message limit and the publisher queue's own byte bound, which charge
//! this one too.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A limit in bytes and what is charged against it now.
#[derive(Debug)]
pub struct ByteBudget {
    limit: u64,
    used: AtomicU64,
}

impl ByteBudget {
    pub fn new(limit: u64) -> Arc<ByteBudget> {
        Arc::new(ByteBudget {
            limit,
            used: AtomicU64::new(0),
        })
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes charged now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Takes `bytes` if they fit under the limit; `None` (nothing taken) if not.
    pub fn try_charge(self: &Arc<Self>, bytes: u64) -> Option<Charge> {
        self.take(bytes).then(|| Charge {
            budget: self.clone(),
            bytes,
        })
    }

    /// An empty charge, to be resized as a holding grows and shrinks.
    pub fn empty_charge(self: &Arc<Self>) -> Charge {
        Charge {
            budget: self.clone(),
            bytes: 0,
        }
    }

    fn take(&self, bytes: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    fn give_back(&self, bytes: u64) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// Bytes taken from a [`ByteBudget`]; given back on drop.
#[derive(Debug)]
pub struct Charge {
    budget: Arc<ByteBudget>,
    bytes: u64,
}

impl Charge {
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Makes this charge `bytes`: shrinking always works, growing only if the difference fits
    /// (`false`, and the charge unchanged, if not).
    pub fn try_resize(&mut self, bytes: u64) -> bool {
        if bytes <= self.bytes {
            self.budget.give_back(self.bytes - bytes);
        } else if !self.budget.take(bytes - self.bytes) {
            return false;
        }
        self.bytes = bytes;
        true
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.give_back(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_fit_under_the_limit_and_come_back_on_drop() {
        let b = ByteBudget::new(100);
        let a = b.try_charge(60).unwrap();
        assert!(b.try_charge(41).is_none(), "over the limit: nothing taken");
        assert_eq!(b.used(), 60);
        let c = b.try_charge(40).unwrap();
        assert_eq!(b.used(), 100);
        drop(a);
        assert_eq!(b.used(), 40);
        drop(c);
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn a_charge_grows_only_within_the_limit_and_shrinks_always() {
        let b = ByteBudget::new(10);
        let other = b.try_charge(4).unwrap();
        let mut c = b.empty_charge();
        assert!(c.try_resize(6));
        assert!(!c.try_resize(7), "4 + 7 > 10");
        assert_eq!((c.bytes(), b.used()), (6, 10));
        assert!(c.try_resize(1));
        assert_eq!(b.used(), 5);
        drop(other);
        drop(c);
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn huge_requests_do_not_wrap_around() {
        let b = ByteBudget::new(u64::MAX - 1);
        let _a = b.try_charge(10).unwrap();
        assert!(b.try_charge(u64::MAX).is_none());
    }
}
