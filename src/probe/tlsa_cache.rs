//! The TLSA RRsets the probes judge by, read from the primaries and kept
//! for [`TLSA_CACHE`](super::dane::TLSA_CACHE): the probes of a node's
//! addresses and pools share one read, and a primary that is slow or down
//! costs one wait per owner and period, never one per probe.
//!
//! A failed read keeps what was read before (a stale RRset judges better
//! than none). `manage` invalidates an owner whose RRset it changed, so
//! the next probe sees the change at once.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::dane::TlsaRead;
use crate::dane::Tlsa;

/// The future of one read.
pub type ReadFuture<'a> = Pin<Box<dyn Future<Output = TlsaRead> + Send + 'a>>;

/// Reads the TLSA RRset at an owner (a name key), signed, from the primary
/// of the zone holding it.
pub trait TlsaReader: Send + Sync {
    fn read<'a>(&'a self, owner: &'a str) -> ReadFuture<'a>;
}

/// The last read of one owner.
#[derive(Default)]
struct Slot {
    at: Option<Instant>,
    records: Option<Vec<Tlsa>>,
    error: Option<String>,
}

/// One owner: its read, behind an async lock so that concurrent probes wait
/// for one read; and whether it was invalidated since.
#[derive(Default)]
struct Entry {
    slot: tokio::sync::Mutex<Slot>,
    stale: AtomicBool,
}

/// The cache; shared by every probe (and told of changes by `manage`).
pub struct TlsaCache {
    reader: Box<dyn TlsaReader>,
    keep: Duration,
    entries: Mutex<HashMap<String, Arc<Entry>>>,
}

impl std::fmt::Debug for TlsaCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsaCache")
            .field("keep", &self.keep)
            .finish_non_exhaustive()
    }
}

impl TlsaCache {
    pub fn new(reader: impl TlsaReader + 'static, keep: Duration) -> Self {
        Self {
            reader: Box::new(reader),
            keep,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn entry(&self, owner: &str) -> Arc<Entry> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.entry(owner.to_owned()).or_default().clone()
    }

    /// The TLSA RRset at `owner`: as read less than the keep time ago, or
    /// read now. A failed read answers with the last records read, if any.
    pub async fn get(&self, owner: &str) -> TlsaRead {
        let entry = self.entry(owner);
        let mut slot = entry.slot.lock().await;
        let stale = entry.stale.swap(false, Ordering::AcqRel);
        let fresh = slot.at.is_some_and(|at| at.elapsed() < self.keep);
        if stale || !fresh {
            match self.reader.read(owner).await {
                Ok(records) => {
                    slot.records = Some(records);
                    slot.error = None;
                }
                Err(error) => slot.error = Some(error),
            }
            slot.at = Some(Instant::now());
        }
        match (&slot.records, &slot.error) {
            (Some(records), _) => Ok(records.clone()),
            (None, Some(error)) => Err(error.clone()),
            (None, None) => Ok(Vec::new()),
        }
    }

    /// The RRset at `owner` changed: the next probe reads it again.
    pub fn invalidate(&self, owner: &str) {
        self.entry(owner).stale.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::dane::KeyDigest;

    /// Answers from a list it is given, counting reads.
    #[derive(Clone)]
    struct Fake {
        answer: Arc<Mutex<TlsaRead>>,
        reads: Arc<AtomicUsize>,
    }

    impl Default for Fake {
        fn default() -> Self {
            Self {
                answer: Arc::new(Mutex::new(Ok(Vec::new()))),
                reads: Arc::default(),
            }
        }
    }

    impl TlsaReader for Fake {
        fn read<'a>(&'a self, _owner: &'a str) -> ReadFuture<'a> {
            Box::pin(async move {
                self.reads.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10)).await;
                self.answer.lock().unwrap().clone()
            })
        }
    }

    fn records(n: u8) -> Vec<Tlsa> {
        vec![Tlsa::dane_ee(KeyDigest([n; 32]))]
    }

    #[tokio::test(start_paused = true)]
    async fn reads_are_shared_kept_and_invalidated() {
        let fake = Fake::default();
        *fake.answer.lock().unwrap() = Ok(records(1));
        let cache = Arc::new(TlsaCache::new(fake.clone(), Duration::from_secs(2)));
        let owner = "_25._tcp.mail1.example.com.";
        // Concurrent probes wait for one read.
        let (a, b) = tokio::join!(cache.get(owner), cache.get(owner));
        assert_eq!((a.unwrap(), b.unwrap()), (records(1), records(1)));
        assert_eq!(fake.reads.load(Ordering::SeqCst), 1);
        *fake.answer.lock().unwrap() = Ok(records(2));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(cache.get(owner).await.unwrap(), records(1), "still kept");
        cache.invalidate(owner);
        assert_eq!(cache.get(owner).await.unwrap(), records(2), "invalidated");
        assert_eq!(fake.reads.load(Ordering::SeqCst), 2);
        *fake.answer.lock().unwrap() = Ok(records(3));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(cache.get(owner).await.unwrap(), records(3), "expired");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_read_keeps_the_last_records() {
        let fake = Fake::default();
        *fake.answer.lock().unwrap() = Err("no answer".to_owned());
        let cache = TlsaCache::new(fake.clone(), Duration::from_secs(2));
        let owner = "_25._tcp.mail1.example.com.";
        assert_eq!(cache.get(owner).await, Err("no answer".to_owned()));
        *fake.answer.lock().unwrap() = Ok(records(1));
        cache.invalidate(owner);
        assert_eq!(cache.get(owner).await.unwrap(), records(1));
        *fake.answer.lock().unwrap() = Err("no answer".to_owned());
        cache.invalidate(owner);
        assert_eq!(cache.get(owner).await.unwrap(), records(1), "stale, kept");
    }
}
