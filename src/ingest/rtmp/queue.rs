//! The publisher queue: FLV bytes on their way from an RTMP connection to its stream's pipeline,
//! bounded in bytes (`rtmp.max_publisher_queue_bytes`), not only in chunks.
//!
//! Why: a count bound holds whatever the chunks weigh: 256 slots of 16 MiB messages are 4 GiB.
//! Here each chunk carries the room it took in its queue and a [`Charge`] on the ingest-wide
//! budget; both come back when the consumer drops the chunk (after handing the bytes to the
//! pipeline), so a chunk the session holds back (the audio sniff) still counts. A full queue
//! makes the sender wait (backpressure onto the publisher's TCP connection); the connection
//! decides how long.

use super::budget::{ByteBudget, Charge};
use bytes::Bytes;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

/// Chunks at most in a queue, whatever their size (the byte bound is the one that matters; this
/// one bounds the per-chunk bookkeeping of tiny tags).
const MAX_QUEUED_CHUNKS: usize = 4096;

/// Why a chunk could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("the stream's consumer went away")]
    Closed,
    #[error("a chunk of {0} bytes is larger than the whole queue")]
    TooLarge(usize),
    #[error("ingest memory budget exhausted ({0} bytes wanted)")]
    IngestBudget(usize),
}

/// A byte-bounded queue of FLV chunks: `max_bytes` per queue, all charged to `total`.
pub fn flv_queue(max_bytes: u32, total: Arc<ByteBudget>) -> (FlvSender, FlvReceiver) {
    let (tx, rx) = mpsc::channel(MAX_QUEUED_CHUNKS);
    let room = Arc::new(Semaphore::new(max_bytes as usize));
    (
        FlvSender {
            tx,
            room,
            max_bytes,
            total,
        },
        FlvReceiver { rx, max_bytes },
    )
}

/// The connection's end of a publisher queue.
#[derive(Debug)]
pub struct FlvSender {
    tx: mpsc::Sender<FlvChunk>,
    room: Arc<Semaphore>,
    max_bytes: u32,
    total: Arc<ByteBudget>,
}

impl FlvSender {
    /// Queues `bytes`, waiting while the queue is full. Fails at once if the chunk cannot fit
    /// even an empty queue or the ingest budget has no room for it.
    pub async fn send(&self, bytes: Bytes) -> Result<(), QueueError> {
        let len = bytes.len();
        let permits = u32::try_from(len)
            .ok()
            .filter(|&n| n <= self.max_bytes)
            .ok_or(QueueError::TooLarge(len))?;
        let room = tokio::select! {
            // A gone consumer wins over the room its dropped chunks just gave back.
            biased;
            _ = self.tx.closed() => return Err(QueueError::Closed),
            permit = self.room.clone().acquire_many_owned(permits) => {
                permit.map_err(|_| QueueError::Closed)?
            }
        };
        let charge = self
            .total
            .try_charge(len as u64)
            .ok_or(QueueError::IngestBudget(len))?;
        let chunk = FlvChunk {
            bytes,
            held: Held {
                _room: room,
                _charge: charge,
            },
        };
        self.tx.send(chunk).await.map_err(|_| QueueError::Closed)
    }
}

/// The stream's end of a publisher queue.
#[derive(Debug)]
pub struct FlvReceiver {
    rx: mpsc::Receiver<FlvChunk>,
    max_bytes: u32,
}

impl FlvReceiver {
    /// The next chunk; `None` once the connection is gone and the queue empty.
    pub async fn recv(&mut self) -> Option<FlvChunk> {
        self.rx.recv().await
    }

    /// [`FlvReceiver::recv`] for a blocking thread.
    pub fn blocking_recv(&mut self) -> Option<FlvChunk> {
        self.rx.blocking_recv()
    }

    /// The queue's byte bound: what the consumer may hold back at most (and more than which it
    /// must not wait for, or the publisher stalls).
    pub fn max_bytes(&self) -> u32 {
        self.max_bytes
    }
}

/// What a queued chunk holds of its queue and of the ingest budget.
#[derive(Debug)]
pub struct Held {
    _room: OwnedSemaphorePermit,
    _charge: Charge,
}

/// One FLV piece (the header or a whole tag) and the room it takes until dropped.
#[derive(Debug)]
pub struct FlvChunk {
    bytes: Bytes,
    held: Held,
}

impl FlvChunk {
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The bytes, and the room they hold: drop the second once the bytes are handed on.
    pub fn into_parts(self) -> (Bytes, Held) {
        (self.bytes, self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn the_queue_is_bounded_in_bytes_and_frees_room_as_chunks_are_dropped() {
        let total = ByteBudget::new(1 << 20);
        let (tx, mut rx) = flv_queue(100, total.clone());
        tx.send(Bytes::from(vec![0; 60])).await.unwrap();
        tx.send(Bytes::from(vec![0; 40])).await.unwrap();
        assert_eq!(total.used(), 100);
        // Full: the next send waits.
        let blocked =
            tokio::time::timeout(Duration::from_millis(50), tx.send(Bytes::from(vec![0; 1])));
        assert!(blocked.await.is_err(), "a full queue makes the sender wait");
        // Received but held (as the audio sniff does): still counted.
        let first = rx.recv().await.unwrap();
        assert_eq!(first.bytes().len(), 60);
        assert_eq!(total.used(), 100);
        drop(first);
        assert_eq!(total.used(), 40);
        tx.send(Bytes::from(vec![0; 60])).await.unwrap();
        assert_eq!(
            tx.send(Bytes::from(vec![0; 101])).await,
            Err(QueueError::TooLarge(101))
        );
    }

    #[tokio::test]
    async fn the_ingest_budget_is_shared_and_a_closed_consumer_frees_a_waiting_sender() {
        let total = ByteBudget::new(150);
        let (a, _ra) = flv_queue(100, total.clone());
        let (b, rb) = flv_queue(100, total.clone());
        a.send(Bytes::from(vec![0; 100])).await.unwrap();
        assert_eq!(
            b.send(Bytes::from(vec![0; 60])).await,
            Err(QueueError::IngestBudget(60))
        );
        b.send(Bytes::from(vec![0; 50])).await.unwrap();
        // Room for 50 more in b's queue: 60 waits.
        let waiting = tokio::spawn(async move { b.send(Bytes::from(vec![0; 60])).await });
        tokio::task::yield_now().await;
        drop(rb);
        assert_eq!(waiting.await.unwrap(), Err(QueueError::Closed));
        assert_eq!(total.used(), 100, "the dropped consumer's chunks came back");
    }
}
