//! Who gets a connection slot. Three limits, so that no one peer, and no crowd of stalled
//! handshakes, can lock publishers out:
//!
//! - **per address** (`rtmp.max_connections_per_address`): connections from one address in any
//!   phase; one more is closed at once. IPv6 addresses count by their /64, which one host
//!   usually has whole.
//! - **handshakes** (`rtmp.max_handshakes`): connections that have not published yet. When all
//!   are taken, a new connection is still admitted and the *oldest* handshake is cut to make
//!   room (nginx reuses idle keep-alive connections the same way): stalled connections then
//!   have to be renewed faster than a publisher completes its handshake to keep it out, instead
//!   of once per `handshake_timeout_ms`.
//! - **publishers** (`rtmp.max_connections`): connections that publish. A publish beyond it is
//!   refused; a publishing connection is never cut for a newcomer.
//!
//! Pure bookkeeping (a mutex-held table; cancellation tokens tell a cut connection to go); the
//! accept loop and the connections act on it.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio_util::sync::CancellationToken;

/// An address as the limits count it: IPv4 (also IPv4-mapped IPv6) as it is, IPv6 by its /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddressKey(IpAddr);

impl From<IpAddr> for AddressKey {
    fn from(ip: IpAddr) -> AddressKey {
        match ip {
            IpAddr::V4(_) => AddressKey(ip),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddressKey(IpAddr::V4(v4)),
                None => {
                    let network = u128::from(v6) & !((1u128 << 64) - 1);
                    AddressKey(IpAddr::V6(network.into()))
                }
            },
        }
    }
}

/// The three limits (from `rtmp.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionLimits {
    pub per_address: usize,
    pub handshakes: usize,
    pub publishers: usize,
}

/// Why a connection or a publish was refused a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("too many connections from this address")]
    AddressLimit,
    #[error("too many publishers")]
    PublisherLimit,
}

#[derive(Debug, Default)]
struct State {
    per_address: HashMap<AddressKey, usize>,
    /// Connections in the handshake phase by admission order, each with its cut signal.
    handshakes: BTreeMap<u64, CancellationToken>,
    publishers: usize,
    next_id: u64,
}

/// The slot table of one RTMP listener.
#[derive(Debug)]
pub struct Admission {
    limits: AdmissionLimits,
    state: Mutex<State>,
}

/// What [`Admission::admit`] did besides admitting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admitted {
    /// A handshake slot was free.
    Free,
    /// The oldest handshake was cut to make room.
    CutOldest,
}

impl Admission {
    pub fn new(limits: AdmissionLimits) -> Arc<Admission> {
        Arc::new(Admission {
            limits,
            state: Mutex::default(),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a new connection from `addr` into the handshake phase; if every handshake slot is
    /// taken, the oldest handshake is told to go ([`Ticket::cut`] fires for it).
    pub fn admit(self: &Arc<Self>, addr: AddressKey) -> Result<(Ticket, Admitted), Refusal> {
        let mut s = self.state();
        let from_addr = s.per_address.get(&addr).copied().unwrap_or(0);
        if from_addr >= self.limits.per_address {
            return Err(Refusal::AddressLimit);
        }
        let mut admitted = Admitted::Free;
        if s.handshakes.len() >= self.limits.handshakes
            && let Some((_, oldest)) = s.handshakes.pop_first()
        {
            oldest.cancel();
            admitted = Admitted::CutOldest;
        }
        *s.per_address.entry(addr).or_insert(0) += 1;
        let id = s.next_id;
        s.next_id += 1;
        let cut = CancellationToken::new();
        s.handshakes.insert(id, cut.clone());
        drop(s);
        Ok((
            Ticket {
                admission: self.clone(),
                addr,
                id,
                publishing: false,
                cut,
            },
            admitted,
        ))
    }

    /// Connections in the handshake phase and publishing now.
    pub fn counts(&self) -> (usize, usize) {
        let s = self.state();
        (s.handshakes.len(), s.publishers)
    }
}

/// One admitted connection's slots; given back on drop.
#[derive(Debug)]
pub struct Ticket {
    admission: Arc<Admission>,
    addr: AddressKey,
    id: u64,
    publishing: bool,
    cut: CancellationToken,
}

impl Ticket {
    /// Fires when this connection, still in its handshake, is cut for a newer one.
    pub fn cut(&self) -> &CancellationToken {
        &self.cut
    }

    pub fn address(&self) -> AddressKey {
        self.addr
    }

    /// Moves the connection from a handshake slot to a publisher slot (it can no longer be
    /// cut), or refuses if every publisher slot is taken.
    pub fn start_publishing(&mut self) -> Result<(), Refusal> {
        if self.publishing {
            return Ok(());
        }
        let mut s = self.admission.state();
        if s.publishers >= self.admission.limits.publishers {
            return Err(Refusal::PublisherLimit);
        }
        s.publishers += 1;
        s.handshakes.remove(&self.id);
        self.publishing = true;
        Ok(())
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut s = self.admission.state();
        if self.publishing {
            s.publishers = s.publishers.saturating_sub(1);
        } else {
            s.handshakes.remove(&self.id);
        }
        if let Some(n) = s.per_address.get_mut(&self.addr) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                s.per_address.remove(&self.addr);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> AddressKey {
        AddressKey::from(s.parse::<IpAddr>().unwrap())
    }

    fn limits() -> AdmissionLimits {
        AdmissionLimits {
            per_address: 2,
            handshakes: 3,
            publishers: 1,
        }
    }

    #[test]
    fn one_address_gets_its_share_and_no_more() {
        let a = Admission::new(limits());
        let first = a.admit(key("192.0.2.1")).unwrap();
        let _second = a.admit(key("192.0.2.1")).unwrap();
        assert_eq!(
            a.admit(key("192.0.2.1")).unwrap_err(),
            Refusal::AddressLimit
        );
        assert!(a.admit(key("192.0.2.2")).is_ok(), "another address");
        drop(first);
        assert!(a.admit(key("192.0.2.1")).is_ok(), "a slot came back");
    }

    #[test]
    fn full_handshake_slots_cut_the_oldest_handshake() {
        let a = Admission::new(limits());
        let tickets: Vec<Ticket> = (1..=3)
            .map(|i| a.admit(key(&format!("192.0.2.{i}"))).unwrap().0)
            .collect();
        let (newcomer, how) = a.admit(key("192.0.2.9")).unwrap();
        assert_eq!(how, Admitted::CutOldest);
        assert!(tickets[0].cut().is_cancelled(), "the oldest goes");
        assert!(!tickets[1].cut().is_cancelled() && !newcomer.cut().is_cancelled());
        assert_eq!(a.counts(), (3, 0));
        // The cut one leaving does not free another's slot.
        drop(tickets);
        assert_eq!(a.counts(), (1, 0));
    }

    #[test]
    fn publishers_leave_the_handshake_slots_and_are_never_cut() {
        let a = Admission::new(limits());
        let (mut publisher, _) = a.admit(key("192.0.2.1")).unwrap();
        publisher.start_publishing().unwrap();
        assert_eq!(a.counts(), (0, 1));
        let mut others: Vec<Ticket> = (2..=6)
            .map(|i| a.admit(key(&format!("192.0.2.{i}"))).unwrap().0)
            .collect();
        assert!(!publisher.cut().is_cancelled());
        assert_eq!(
            others[4].start_publishing().unwrap_err(),
            Refusal::PublisherLimit
        );
        drop(publisher);
        others[4].start_publishing().unwrap();
        assert_eq!(a.counts(), (2, 1));
    }

    #[test]
    fn ipv6_counts_by_network_and_mapped_ipv4_as_ipv4() {
        assert_eq!(key("2001:db8::1"), key("2001:db8::2:3"));
        assert_ne!(key("2001:db8::1"), key("2001:db8:0:1::1"));
        assert_eq!(key("::ffff:192.0.2.1"), key("192.0.2.1"));
    }
}
