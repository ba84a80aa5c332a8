//! Latency percentiles for the benchmark.

use std::time::Duration;

/// p50 and p99 of a set of samples.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Summary {
    pub p50: Duration,
    pub p99: Duration,
}

/// Nearest-rank percentiles; zero for no samples.
pub fn summarize(mut samples: Vec<Duration>) -> Summary {
    samples.sort_unstable();
    Summary {
        p50: percentile(&samples, 50),
        p99: percentile(&samples, 99),
    }
}

/// The smallest sample at or above `pct` percent of the sorted `samples`.
fn percentile(sorted: &[Duration], pct: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (sorted.len() * pct).div_ceil(100).max(1);
    sorted[rank.min(sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let ms = |n| Duration::from_millis(n);
        let s = summarize((1..=100).rev().map(ms).collect());
        assert_eq!(
            s,
            Summary {
                p50: ms(50),
                p99: ms(99)
            }
        );
        assert_eq!(
            summarize(vec![ms(7)]),
            Summary {
                p50: ms(7),
                p99: ms(7)
            }
        );
        assert_eq!(summarize(vec![]), Summary::default());
    }
}
