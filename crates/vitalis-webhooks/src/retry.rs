//! What a delivery attempt means and when to try again: 2xx delivered; 429, 5xx, timeouts
//! and connection errors retried on a schedule (with jitter, honouring `Retry-After`); 410
//! disables the endpoint; any other status is final.

use std::time::Duration;

/// The result of one HTTP attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptResult {
    Status {
        code: u16,
        retry_after: Option<Duration>,
    },
    /// Timeout, connection refused, TLS failure, refused target...
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// Try again after this long.
    RetryAfter(Duration),
    /// The endpoint is gone (410): disable it.
    Gone,
    /// Final failure: dead-letter the delivery.
    Dead,
}

/// The longest `Retry-After` honoured.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Decides what follows attempt number `attempt` (1-based) given `schedule`, the pauses
/// between attempts. `jitter` is a factor in [0, 1) applied as +-20%.
pub fn verdict(result: &AttemptResult, attempt: usize, schedule: &[Duration], jitter: f64) -> Verdict {
    let retryable = match result {
        AttemptResult::Status { code, .. } if (200..300).contains(code) => return Verdict::Delivered,
        AttemptResult::Status { code: 410, .. } => return Verdict::Gone,
        AttemptResult::Status { code, .. } => *code == 429 || (500..600).contains(code),
        AttemptResult::Failed => true,
    };
    if !retryable {
        return Verdict::Dead;
    }
    let Some(pause) = schedule.get(attempt.saturating_sub(1)) else { return Verdict::Dead };
    let retry_after = match result {
        AttemptResult::Status { retry_after, .. } => *retry_after,
        AttemptResult::Failed => None,
    };
    let delay = match retry_after {
        Some(wait) => wait.min(MAX_RETRY_AFTER),
        None => pause.mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0)),
    };
    Verdict::RetryAfter(delay)
}

/// Parses `Retry-After` as seconds (the HTTP-date form is treated as absent).
pub fn parse_retry_after(value: Option<&str>) -> Option<Duration> {
    value.and_then(|v| v.trim().parse::<u64>().ok()).map(Duration::from_secs)
}

/// The default schedule: 11 retries over about a day (5 s, 30 s, 2 min, 10 min, 30 min, 1 h,
/// 2 h, 4 h, 6 h, 8 h, 8 h).
pub fn default_schedule() -> Vec<Duration> {
    [5, 30, 120, 600, 1800, 3600, 7200, 14_400, 21_600, 28_800, 28_800].into_iter().map(Duration::from_secs).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> AttemptResult {
        AttemptResult::Status { code, retry_after: None }
    }

    #[test]
    fn classification() {
        let schedule = default_schedule();
        assert_eq!(verdict(&status(204), 1, &schedule, 0.5), Verdict::Delivered);
        assert_eq!(verdict(&status(410), 1, &schedule, 0.5), Verdict::Gone);
        assert_eq!(verdict(&status(400), 1, &schedule, 0.5), Verdict::Dead);
        assert_eq!(verdict(&status(404), 1, &schedule, 0.5), Verdict::Dead);
        assert_eq!(verdict(&status(500), 1, &schedule, 0.5), Verdict::RetryAfter(Duration::from_secs(5)));
        assert_eq!(verdict(&AttemptResult::Failed, 2, &schedule, 0.5), Verdict::RetryAfter(Duration::from_secs(30)));
        let limited = AttemptResult::Status { code: 429, retry_after: Some(Duration::from_secs(7)) };
        assert_eq!(verdict(&limited, 1, &schedule, 0.9), Verdict::RetryAfter(Duration::from_secs(7)));
        assert_eq!(verdict(&status(503), schedule.len() + 1, &schedule, 0.5), Verdict::Dead);
    }

    #[test]
    fn jitter_stays_within_twenty_percent_and_the_schedule_spans_a_day() {
        let schedule = default_schedule();
        for jitter in [0.0, 0.99] {
            let Verdict::RetryAfter(d) = verdict(&status(500), 3, &schedule, jitter) else { panic!() };
            assert!(d >= Duration::from_secs(96) && d <= Duration::from_secs(144), "{d:?}");
        }
        let total: Duration = schedule.iter().sum();
        assert!(total >= Duration::from_secs(20 * 3600) && total <= Duration::from_secs(36 * 3600), "{total:?}");
    }

    #[test]
    fn retry_after_parsing() {
        assert_eq!(parse_retry_after(Some(" 3 ")), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")), None);
        assert_eq!(parse_retry_after(None), None);
    }
}
