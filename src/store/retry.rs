//! Repeating a store operation that failed with a temporary error (5xx,
//! 429, timeout, connection reset): how often, how patiently, and the loop
//! every backend runs its requests in. The archiver reuses the back-off
//! between attempts at a whole blob.

use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

/// An error as the retry log shows it: with its causes, once.
pub(crate) trait Shown {
    /// The text for the log line.
    fn shown(&self) -> String;
}

impl Shown for crate::Error {
    fn shown(&self) -> String {
        self.chain().to_string()
    }
}

impl Shown for ::opendal::Error {
    fn shown(&self) -> String {
        // OpenDAL's `Display` carries its cause already.
        self.to_string()
    }
}

/// How often and how patiently to repeat an operation that failed with a
/// temporary error.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Retry {
    /// Attempts after the first.
    pub(crate) times: u32,
    /// Delay before the first retry; doubles each time, with jitter.
    pub(crate) min_delay: Duration,
    /// Cap on one delay.
    pub(crate) max_delay: Duration,
}

impl Retry {
    /// No retries (a local folder has nothing to wait out).
    pub(super) const NONE: Retry = Retry {
        times: 0,
        min_delay: Duration::ZERO,
        max_delay: Duration::ZERO,
    };

    /// Delay before retry number `attempt` (0-based): half the exponential
    /// step plus a random part of the other half, so many workers that failed
    /// together do not come back together.
    pub(crate) fn delay(&self, attempt: u32) -> Duration {
        let step = self
            .min_delay
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.max_delay);
        let half = step / 2;
        // A fresh RandomState is randomly keyed: enough randomness for jitter.
        let random = RandomState::new().hash_one(attempt);
        half + half.mul_f64((random >> 11) as f64 / (1u64 << 53) as f64)
    }

    /// Run `attempt` until it succeeds, fails with an error `is_temporary`
    /// calls permanent, or the retries run out; the last error is returned
    /// as it came, so its kind (and temporary status) survives.
    pub(super) async fn run<T, E, F, Fut>(
        &self,
        doing: &str,
        is_temporary: impl Fn(&E) -> bool,
        mut attempt: F,
    ) -> Result<T, E>
    where
        E: Shown,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut retries = 0;
        loop {
            match attempt().await {
                Err(e) if is_temporary(&e) && retries < self.times => {
                    let delay = self.delay(retries);
                    retries += 1;
                    tracing::debug!(doing, retries, ?delay, error = %e.shown(), "retrying store operation");
                    tokio::time::sleep(delay).await;
                }
                done => return done,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_grow_with_jitter_and_stay_capped() {
        let retry = Retry {
            times: 4,
            min_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(1),
        };
        for attempt in 0..6 {
            let step = (200u64 << attempt).min(1000);
            let d = retry.delay(attempt).as_millis() as u64;
            assert!(d >= step / 2 && d <= step, "attempt {attempt}: {d} ms");
        }
        let spread: std::collections::HashSet<_> = (0..20).map(|_| retry.delay(3)).collect();
        assert!(spread.len() > 1, "no jitter");
    }

    impl Shown for &str {
        fn shown(&self) -> String {
            (*self).to_owned()
        }
    }

    #[tokio::test]
    async fn only_temporary_errors_are_repeated_and_only_so_often() {
        let retry = Retry {
            times: 2,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(1),
        };
        let temporary = |e: &&str| *e == "503";
        let mut calls = 0;
        let got = retry
            .run("t", temporary, || {
                calls += 1;
                async { Err::<(), _>("503") }
            })
            .await;
        assert_eq!((got, calls), (Err("503"), 3));
        let mut calls = 0;
        let got = retry
            .run("t", temporary, || {
                calls += 1;
                async { Err::<(), _>("400") }
            })
            .await;
        assert_eq!((got, calls), (Err("400"), 1));
        let mut calls = 0;
        let got = retry
            .run("t", temporary, || {
                calls += 1;
                let n = calls;
                async move { if n < 3 { Err("503") } else { Ok(n) } }
            })
            .await;
        assert_eq!(got, Ok(3));
    }
}
