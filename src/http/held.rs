//! How many LL-HLS blocking requests may wait at once, in total and per stream (the origin and
//! the edge each have one budget). A request that finds no room is answered 503 at once
//! instead of holding memory and a connection without bound.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Counts of held requests; a [`HeldSlot`] is one of them.
pub struct HeldBudget {
    max_total: usize,
    max_per_stream: usize,
    state: Mutex<HeldState>,
}

#[derive(Default)]
struct HeldState {
    total: usize,
    per_stream: HashMap<String, usize>,
}

/// One held request; dropping it frees the slot.
pub struct HeldSlot {
    budget: Arc<HeldBudget>,
    stream: String,
}

impl HeldBudget {
    pub fn new(max_total: usize, max_per_stream: usize) -> Arc<HeldBudget> {
        Arc::new(HeldBudget {
            max_total,
            max_per_stream,
            state: Mutex::default(),
        })
    }

    /// A slot for a request on `stream`, or `None` when either limit is reached.
    pub fn try_hold(self: &Arc<Self>, stream: &str) -> Option<HeldSlot> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.total >= self.max_total {
            return None;
        }
        let n = st.per_stream.entry(stream.to_string()).or_insert(0);
        if *n >= self.max_per_stream {
            return None;
        }
        *n += 1;
        st.total += 1;
        Some(HeldSlot {
            budget: self.clone(),
            stream: stream.to_string(),
        })
    }

    /// Requests held now.
    pub fn held(&self) -> usize {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).total
    }
}

impl Drop for HeldSlot {
    fn drop(&mut self) {
        let mut st = self.budget.state.lock().unwrap_or_else(|p| p.into_inner());
        st.total = st.total.saturating_sub(1);
        if let Some(n) = st.per_stream.get_mut(&self.stream) {
            *n -= 1;
            if *n == 0 {
                st.per_stream.remove(&self.stream);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_hold_per_stream_and_in_total_and_free_on_drop() {
        let b = HeldBudget::new(3, 2);
        let a1 = b.try_hold("a").unwrap();
        let _a2 = b.try_hold("a").unwrap();
        assert!(b.try_hold("a").is_none(), "per stream");
        let _b1 = b.try_hold("b").unwrap();
        assert!(b.try_hold("c").is_none(), "in total");
        assert_eq!(b.held(), 3);
        drop(a1);
        assert!(b.try_hold("c").is_some());
        assert_eq!(b.held(), 2, "the temporary slot was dropped again");
    }
}
