//! Time, injected: services and stores ask a [`Clock`] rather than the
//! system, so tests of expiry can move time instead of sleeping. Times are
//! [`UnixMillis`], the protocol's unit.

use std::time::{SystemTime, UNIX_EPOCH};

use wisp_proto::UnixMillis;

/// Where services read the time from.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> UnixMillis;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> UnixMillis {
        UnixMillis(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
                .unwrap_or(0),
        )
    }
}

/// A clock that moves only when told to: for tests of expiry that must not
/// sleep for minutes.
#[cfg(any(test, feature = "test-support"))]
#[derive(Debug)]
pub struct ManualClock(std::sync::atomic::AtomicI64);

#[cfg(any(test, feature = "test-support"))]
impl ManualClock {
    /// A clock showing the system time now.
    pub fn starting_now() -> Self {
        Self(std::sync::atomic::AtomicI64::new(SystemClock.now_ms().0))
    }

    /// Moves time forward.
    pub fn advance(&self, by: std::time::Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.0.fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
    }
}

#[cfg(any(test, feature = "test-support"))]
impl Clock for ManualClock {
    fn now_ms(&self) -> UnixMillis {
        UnixMillis(self.0.load(std::sync::atomic::Ordering::SeqCst))
    }
}
