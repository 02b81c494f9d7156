//! Differences of cumulative kernel counters between two readings. Counters
//! only grow, but a device that was re-created starts again from zero:
//! differences wrap, as the kernel's own tools do.

use std::collections::BTreeMap;

/// `self - earlier`, field by field.
pub trait Delta {
    fn delta(&self, earlier: &Self) -> Self;
}

impl Delta for u64 {
    fn delta(&self, earlier: &Self) -> Self {
        self.wrapping_sub(*earlier)
    }
}

impl<const N: usize> Delta for [u64; N] {
    fn delta(&self, earlier: &Self) -> Self {
        std::array::from_fn(|i| self[i].wrapping_sub(earlier[i]))
    }
}

/// A table read later may be longer than one read earlier (a missing entry
/// counted from zero).
impl Delta for Vec<u64> {
    fn delta(&self, earlier: &Self) -> Self {
        self.iter()
            .enumerate()
            .map(|(i, n)| n.wrapping_sub(earlier.get(i).copied().unwrap_or(0)))
            .collect()
    }
}

/// Keyed counters: keys absent earlier count from zero; keys with nothing
/// new in the period are left out.
impl<K: Ord + Copy> Delta for BTreeMap<K, u64> {
    fn delta(&self, earlier: &Self) -> Self {
        self.iter()
            .map(|(k, n)| (*k, n.wrapping_sub(earlier.get(k).copied().unwrap_or(0))))
            .filter(|(_, n)| *n > 0)
            .collect()
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
    fn fields_wrap_and_identities_are_kept() {
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
        assert_eq!(
            later.delta(&earlier),
            Cpu {
                cpu: 3,
                packets: 3,
                buckets: [4, u64::MAX]
            }
        );
        assert_eq!(vec![4u64, 9].delta(&vec![1]), vec![3, 9]);
        let m = BTreeMap::from([(1u32, 5u64), (2, 2)]);
        assert_eq!(m.delta(&BTreeMap::from([(2, 2)])), BTreeMap::from([(1, 5)]));
    }
}
