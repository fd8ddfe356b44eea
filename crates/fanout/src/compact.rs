//! Small representations for what most accounts never use (#11: an idle
//! session's account was 408 bytes, most of them empty hash maps).
//!
//! - [`Lazy`]: a value allocated on its first write. Reads of one never
//!   written see a shared empty value, so a follower's account keeps a null
//!   pointer where a publisher keeps its follower index.
//! - [`Seeded`]: a hasher builder of no size whose keys are drawn once per
//!   process. A map with it is 16 bytes smaller than with `RandomState`,
//!   and JIDs from the network still cannot be chosen to collide.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::ops::{Deref, DerefMut};
use std::sync::LazyLock;

/// Random keys, drawn once per process, for every [`Seeded`] map.
static KEYS: LazyLock<RandomState> = LazyLock::new(RandomState::new);

/// A zero-sized `BuildHasher` over the process's random keys.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Seeded;

impl BuildHasher for Seeded {
    type Hasher = DefaultHasher;
    fn build_hasher(&self) -> DefaultHasher {
        KEYS.build_hasher()
    }
}

/// A hash map with [`Seeded`] keys.
pub(crate) type Map<K, V> = HashMap<K, V, Seeded>;
/// A hash set with [`Seeded`] keys.
pub(crate) type Set<K> = HashSet<K, Seeded>;

/// A type with one shared empty value, what [`Lazy`] reads before its
/// first write.
pub(crate) trait Empty: Default + 'static {
    /// The shared empty value.
    fn empty() -> &'static Self;
}

/// Implements [`Empty`] for concrete map and set types (a static cannot
/// be generic): each gets one `static` empty value, built at compile time.
macro_rules! empty {
    ($($t:ty),* $(,)?) => {$(
        impl $crate::compact::Empty for $t {
            fn empty() -> &'static Self {
                static EMPTY: $t = <$t>::with_hasher($crate::compact::Seeded);
                &EMPTY
            }
        }
    )*};
}
pub(crate) use empty;

/// A `T` allocated on its first mutable use: 8 bytes until then.
pub(crate) struct Lazy<T>(Option<Box<T>>);

impl<T> Lazy<T> {
    /// Nothing allocated.
    pub(crate) const fn new() -> Self {
        Self(None)
    }
}

impl<T> Default for Lazy<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Empty> Deref for Lazy<T> {
    type Target = T;
    fn deref(&self) -> &T {
        match &self.0 {
            Some(t) => t,
            None => T::empty(),
        }
    }
}

impl<T: Empty> DerefMut for Lazy<T> {
    fn deref_mut(&mut self) -> &mut T {
        self.0.get_or_insert_with(Default::default)
    }
}

impl<T: Empty + std::fmt::Debug> std::fmt::Debug for Lazy<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lazy_map_allocates_on_its_first_write_only() {
        let mut m: Lazy<Map<u32, u32>> = Lazy::new();
        assert_eq!(std::mem::size_of_val(&m), 8);
        assert!(m.get(&1).is_none());
        assert!(m.0.is_none(), "a read allocates nothing");
        m.insert(1, 2);
        assert_eq!(m.get(&1), Some(&2));
        assert!(m.0.is_some());
        // The shared empty value was never written.
        let other: Lazy<Map<u32, u32>> = Lazy::new();
        assert!(other.is_empty());
    }

    #[test]
    fn seeded_maps_are_smaller_and_hash_alike_within_a_process() {
        assert_eq!(std::mem::size_of::<Seeded>(), 0);
        assert_eq!(
            std::mem::size_of::<Map<u64, u64>>() + 16,
            std::mem::size_of::<HashMap<u64, u64>>()
        );
        assert_eq!(Seeded.hash_one("a@b"), Seeded.hash_one("a@b"));
        assert_ne!(Seeded.hash_one("a@b"), Seeded.hash_one("b@b"));
    }

    empty!(Map<u32, u32>, Set<u8>);

    #[test]
    fn each_type_has_one_empty_value() {
        let a: &Set<u8> = Set::empty();
        let b: &Map<u32, u32> = Map::empty();
        assert!(a.is_empty() && b.is_empty());
        assert!(std::ptr::eq(a, Set::<u8>::empty()));
    }
}
