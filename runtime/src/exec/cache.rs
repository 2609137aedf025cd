//! The KV cache of every backend: one `[h, positions, k]` tensor per slot, of the
//! backend's elements (`f64` in the reference interpreter, ring elements in the
//! fixed-point backend, this party's shares in a two-party run), and which
//! `(head, position)` entries are valid. A write makes every entry of the slot valid;
//! [`Cache::invalidate`] marks one entry as a hole (a skipped head, an evicted position:
//! COMET.md §4, the refill issue); reading a slot with a hole through [`Cache::read`] is an
//! error naming the slot, head and position, never a silent use of stale values.

use ndarray::{Array2, ArrayD};
use std::collections::BTreeMap;

/// A cache read found an entry that is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CacheError {
    /// The slot was never written.
    #[error("cache slot {slot} is empty")]
    Empty {
        /// The slot.
        slot: u32,
    },
    /// An entry was invalidated and not refilled.
    #[error(
        "cache slot {slot}: head {head}, position {position} is not valid (a hole that was not refilled)"
    )]
    Hole {
        /// The slot.
        slot: u32,
        /// The head (axis 0).
        head: usize,
        /// The position (axis 1).
        position: usize,
    },
}

/// One `[h, positions, k]` tensor of `T` per slot, and which `(head, position)` entries
/// are valid.
#[derive(Clone, PartialEq)]
pub struct Cache<T> {
    slots: BTreeMap<u32, ArrayD<T>>,
    valid: BTreeMap<u32, Array2<bool>>,
}

impl<T> Default for Cache<T> {
    fn default() -> Self {
        Cache {
            slots: BTreeMap::new(),
            valid: BTreeMap::new(),
        }
    }
}

/// The slots and their shapes: a party's cache holds shares, which never reach a log.
impl<T> std::fmt::Debug for Cache<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shapes = self.slots.iter().map(|(s, x)| (s, x.shape()));
        f.debug_map().entries(shapes).finish()
    }
}

impl<T> Cache<T> {
    /// An empty cache (for a new sequence).
    pub fn new() -> Self {
        Self::default()
    }

    /// The contents of `slot`, if it was written, whatever their validity.
    pub fn get(&self, slot: u32) -> Option<&ArrayD<T>> {
        self.slots.get(&slot)
    }

    /// The contents of `slot`, if written and valid at every (head, position).
    ///
    /// # Errors
    /// [`CacheError::Empty`] or the first [`CacheError::Hole`].
    pub fn read(&self, slot: u32) -> Result<&ArrayD<T>, CacheError> {
        let x = self.slots.get(&slot).ok_or(CacheError::Empty { slot })?;
        if let Some(v) = self.valid.get(&slot)
            && let Some(((head, position), _)) = v.indexed_iter().find(|(_, ok)| !**ok)
        {
            return Err(CacheError::Hole {
                slot,
                head,
                position,
            });
        }
        Ok(x)
    }

    /// Replaces the contents of `slot`; every entry becomes valid.
    pub fn set(&mut self, slot: u32, value: ArrayD<T>) {
        let (h, t) = match value.shape() {
            [h, t, ..] => (*h, *t),
            [t] => (1, *t),
            [] => (1, 1),
        };
        self.valid.insert(slot, Array2::from_elem((h, t), true));
        self.slots.insert(slot, value);
    }

    /// Replaces the contents of `slot` with `value` `[h, t, ..]`, valid where `valid`
    /// `[h, t]` says.
    ///
    /// # Panics
    /// If `valid` is not `[h, t]` of `value`.
    pub fn set_with_validity(&mut self, slot: u32, value: ArrayD<T>, valid: Array2<bool>) {
        assert_eq!(&value.shape()[..2], &[valid.nrows(), valid.ncols()]);
        self.valid.insert(slot, valid);
        self.slots.insert(slot, value);
    }

    /// Which `(head, position)` entries of `slot` are valid, if it was written.
    pub fn validity(&self, slot: u32) -> Option<&Array2<bool>> {
        self.valid.get(&slot)
    }

    /// Marks entry (`head`, `position`) of `slot` as not valid; `false` if there is no
    /// such entry.
    pub fn invalidate(&mut self, slot: u32, head: usize, position: usize) -> bool {
        match (self.valid.get_mut(&slot)).and_then(|v| v.get_mut((head, position))) {
            Some(ok) => {
                *ok = false;
                true
            }
            None => false,
        }
    }

    /// Whether entry (`head`, `position`) of `slot` holds valid shares.
    pub fn is_valid(&self, slot: u32, head: usize, position: usize) -> bool {
        (self.valid.get(&slot)).is_some_and(|v| v.get((head, position)) == Some(&true))
    }

    /// The number of valid positions of `head` in `slot`.
    pub fn valid_positions(&self, slot: u32, head: usize) -> usize {
        (self.valid.get(&slot)).map_or(0, |v| {
            v.outer_iter()
                .nth(head)
                .map_or(0, |row| row.iter().filter(|ok| **ok).count())
        })
    }

    /// The slots written so far, in order.
    pub fn slots(&self) -> impl Iterator<Item = u32> + '_ {
        self.slots.keys().copied()
    }

    /// Forgets every slot.
    pub fn clear(&mut self) {
        self.slots.clear();
        self.valid.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::IxDyn;

    #[test]
    fn writes_are_valid_and_holes_are_named() {
        let mut c = Cache::<u64>::new();
        assert_eq!(c.read(3), Err(CacheError::Empty { slot: 3 }));
        c.set(3, ArrayD::zeros(IxDyn(&[2, 5, 4])));
        assert!(c.read(3).is_ok());
        assert!(c.is_valid(3, 1, 4));
        assert!(!c.is_valid(3, 2, 0), "no head 2");
        assert!(c.invalidate(3, 1, 2));
        assert!(!c.invalidate(3, 1, 5), "no position 5");
        assert_eq!(c.valid_positions(3, 1), 4);
        assert_eq!(c.valid_positions(3, 0), 5);
        let e = c.read(3).unwrap_err();
        assert_eq!(
            e,
            CacheError::Hole {
                slot: 3,
                head: 1,
                position: 2
            }
        );
        assert!(e.to_string().contains("head 1, position 2"), "{e}");
        c.set(3, ArrayD::zeros(IxDyn(&[2, 6, 4])));
        assert!(c.read(3).is_ok(), "a rewrite refills");
    }
}
