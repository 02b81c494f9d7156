//! Differences of cumulative counters between two readings. The kernel's
//! counters (stats64, ethtool, snmp, softnet_stat) are 64-bit: they do not
//! wrap in a node's lifetime, so a smaller later value is a reset (a device
//! re-created, a driver reset, `ethtool -L`, a namespace re-created). One
//! policy for every counter: after a reset, what was counted since is the
//! later value; [`Delta::reset_since`] tells the report to flag the period.

use std::collections::BTreeMap;

/// What a counter counted from `earlier` to `later` (a reset counts from 0).
pub fn since(later: u64, earlier: u64) -> u64 {
    if later >= earlier {
        later - earlier
    } else {
        later
    }
}

/// `self - earlier`, field by field.
pub trait Delta {
    fn delta(&self, earlier: &Self) -> Self;
    /// Whether any counter went backwards between the two readings.
    fn reset_since(&self, earlier: &Self) -> bool;
}

impl Delta for u64 {
    fn delta(&self, earlier: &Self) -> Self {
        since(*self, *earlier)
    }
    fn reset_since(&self, earlier: &Self) -> bool {
        self < earlier
    }
}

impl<const N: usize> Delta for [u64; N] {
    fn delta(&self, earlier: &Self) -> Self {
        std::array::from_fn(|i| since(self[i], earlier[i]))
    }
    fn reset_since(&self, earlier: &Self) -> bool {
        self.iter().zip(earlier).any(|(l, e)| l < e)
    }
}

/// A table read later may be longer than one read earlier (a missing entry
/// counted from zero).
impl Delta for Vec<u64> {
    fn delta(&self, earlier: &Self) -> Self {
        self.iter()
            .enumerate()
            .map(|(i, n)| since(*n, earlier.get(i).copied().unwrap_or(0)))
            .collect()
    }
    fn reset_since(&self, earlier: &Self) -> bool {
        self.iter().zip(earlier).any(|(l, e)| l < e)
    }
}

/// Keyed counters: keys absent earlier count from zero; keys with nothing
/// new in the period are left out.
impl<K: Ord + Copy> Delta for BTreeMap<K, u64> {
    fn delta(&self, earlier: &Self) -> Self {
        self.iter()
            .map(|(k, n)| (*k, since(*n, earlier.get(k).copied().unwrap_or(0))))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
    fn reset_since(&self, earlier: &Self) -> bool {
        self.iter()
            .any(|(k, n)| earlier.get(k).is_some_and(|e| n < e))
    }
}

/// Implements [`Delta`] for a struct of counters: each field in the list is
/// differenced, each one after `keep` (an identity, like a CPU number) is
/// taken from the later reading.
macro_rules! counters {
    ($t:ty { $($field:ident),* $(,)? } $(keep { $($kept:ident),* $(,)? })?) => {
        impl $crate::delta::Delta for $t {
            fn delta(&self, earlier: &Self) -> Self {
                Self {
                    $($field: $crate::delta::Delta::delta(&self.$field, &earlier.$field),)*
                    $($($kept: self.$kept.clone(),)*)?
                }
            }
            fn reset_since(&self, earlier: &Self) -> bool {
                false $(|| $crate::delta::Delta::reset_since(&self.$field, &earlier.$field))*
            }
        }
    };
}
pub(crate) use counters;

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Cpu {
        cpu: u32,
        packets: u64,
        buckets: [u64; 2],
    }
    counters!(Cpu { packets, buckets } keep { cpu });

    #[test]
    fn a_smaller_later_value_is_a_reset_and_identities_are_kept() {
        let later = Cpu {
            cpu: 3,
            packets: 5,
            buckets: [7, 1],
        };
        let earlier = Cpu {
            cpu: 3,
            packets: 2,
            buckets: [3, 2],
        };
        // buckets[1] went from 2 to 1: reset, 1 counted since.
        assert_eq!(
            later.delta(&earlier),
            Cpu {
                cpu: 3,
                packets: 3,
                buckets: [4, 1]
            }
        );
        assert!(later.reset_since(&earlier));
        assert!(!later.reset_since(&later));
        assert_eq!(vec![4u64, 9].delta(&vec![1]), vec![3, 9]);
        assert_eq!(vec![4u64, 9].delta(&vec![5, 9]), vec![4, 0]);
        let m = BTreeMap::from([(1u32, 5u64), (2, 2)]);
        assert_eq!(m.delta(&BTreeMap::from([(2, 2)])), BTreeMap::from([(1, 5)]));
        assert!(m.reset_since(&BTreeMap::from([(1, 6)])));
        assert!(!m.reset_since(&BTreeMap::from([(3, 6)])));
    }

    proptest::proptest! {
        /// Whatever the readings (resets included), a delta is never more
        /// than the later reading, and the deltas of a sequence never add up
        /// to more than the sum of its readings: no wrapped value.
        #[test]
        fn no_sequence_gives_more_than_its_readings(
            readings in proptest::collection::vec(0u64..u64::MAX / 64, 1..32),
        ) {
            let mut total = 0u64;
            for pair in readings.windows(2) {
                let d = pair[1].delta(&pair[0]);
                proptest::prop_assert!(d <= pair[1]);
                proptest::prop_assert_eq!(pair[1].reset_since(&pair[0]), pair[1] < pair[0]);
                total += d;
            }
            proptest::prop_assert!(total <= readings.iter().sum::<u64>());
        }
    }
}
