//! What a decoded value takes in memory, measured by walking it: what the payload guard charges for it, the
//! heap it really holds (capacity and node overhead included), and the heap behind boxes. Implemented here for the standard types the harness decodes; the harness implements it for its own.

use std::collections::{BTreeMap, HashMap};
use std::mem::size_of;

use serde_bytes::ByteBuf;

/// What a decoded value takes in memory, measured by walking it.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Cost {
    /// What the guard charges: each element (or key and value) of a sequence or map, the size of its type;
    /// each owned string or byte buffer, its length; each boxed compound value bigger than a pointer, its size.
    pub(crate) charged: usize,
    /// Heap memory outside boxes: vectors' and strings' capacity, B-tree nodes, hash tables.
    pub(crate) heap: usize,
    /// Heap memory behind `Box`es (charged, for the harness's boxed types).
    pub(crate) boxed: usize,
    /// How many boxes.
    pub(crate) boxes: usize,
}

/// Walks a decoded value and adds up its [`Cost`].
pub(crate) trait Footprint {
    /// Adds what `self` takes beyond its own inline size to `cost`.
    fn add(&self, cost: &mut Cost);

    /// Whether the encoding has no map: then a re-encoding as long as the input is the input.
    const NO_MAP: bool = true;
    /// Whether equal values encode to equal bytes (false with a `HashMap`, which encodes in its iteration order).
    const STABLE: bool = true;
}

macro_rules! no_heap {
    ($($t:ty),*) => {$(
        impl Footprint for $t {
            fn add(&self, _: &mut Cost) {}
        }
    )*};
}

no_heap!(
    (),
    bool,
    char,
    u8,
    u16,
    u32,
    u64,
    u128,
    i8,
    i16,
    i32,
    i64,
    i128,
    f32,
    f64
);

impl Footprint for String {
    fn add(&self, cost: &mut Cost) {
        cost.charged += self.len();
        cost.heap += self.capacity();
    }
}

impl Footprint for ByteBuf {
    fn add(&self, cost: &mut Cost) {
        cost.charged += self.len();
        cost.heap += self.capacity();
    }
}

impl<T: Footprint> Footprint for Vec<T> {
    fn add(&self, cost: &mut Cost) {
        cost.charged += self.len() * size_of::<T>();
        cost.heap += self.capacity() * size_of::<T>();
        self.iter().for_each(|t| t.add(cost));
    }
    const NO_MAP: bool = T::NO_MAP;
    const STABLE: bool = T::STABLE;
}

impl<T: Footprint, const N: usize> Footprint for [T; N] {
    fn add(&self, cost: &mut Cost) {
        self.iter().for_each(|t| t.add(cost));
    }
    const NO_MAP: bool = T::NO_MAP;
    const STABLE: bool = T::STABLE;
}

impl<T: Footprint> Footprint for Option<T> {
    fn add(&self, cost: &mut Cost) {
        if let Some(t) = self {
            t.add(cost);
        }
    }
    const NO_MAP: bool = T::NO_MAP;
    const STABLE: bool = T::STABLE;
}

impl<T: Footprint> Footprint for Box<T> {
    fn add(&self, cost: &mut Cost) {
        // The guard charges a boxed struct, enum, tuple, option or collection that is bigger than the box's
        // pointer (it cannot live in the box's slot); every boxed type of the harness is one.
        if size_of::<T>() > size_of::<Box<T>>() {
            cost.charged += size_of::<T>();
        }
        cost.boxed += size_of::<T>();
        cost.boxes += 1;
        (**self).add(cost);
    }
    const NO_MAP: bool = T::NO_MAP;
    const STABLE: bool = T::STABLE;
}

impl<K: Footprint, V: Footprint> Footprint for BTreeMap<K, V> {
    fn add(&self, cost: &mut Cost) {
        let (len, entry) = (self.len(), size_of::<K>() + size_of::<V>());
        cost.charged += len * entry;
        // A node holds up to 11 entries (a leaf: a parent pointer, two u16 and the entries; an internal node
        // also 12 child pointers); every node but the root holds at least 5.
        if len > 0 {
            let leaf = 16 + 11 * entry;
            let leaves = if len <= 11 { 1 } else { len / 5 + 1 };
            let internal = if len <= 11 { 0 } else { leaves / 5 + 1 };
            cost.heap += leaves * leaf + internal * (leaf + 12 * size_of::<usize>());
        }
        self.iter().for_each(|(k, v)| {
            k.add(cost);
            v.add(cost);
        });
    }
    const NO_MAP: bool = false;
    const STABLE: bool = K::STABLE && V::STABLE;
}

impl<K: Footprint, V: Footprint> Footprint for HashMap<K, V> {
    fn add(&self, cost: &mut Cost) {
        cost.charged += self.len() * (size_of::<K>() + size_of::<V>());
        // hashbrown: a power of two of buckets (4 at least, 8/7 of the capacity from 8 on), one control byte
        // each plus a group's worth.
        if self.capacity() > 0 {
            let buckets = (self.capacity() * 8 / 7 + 1).next_power_of_two().max(4);
            cost.heap += buckets * (size_of::<(K, V)>() + 1) + 16;
        }
        self.iter().for_each(|(k, v)| {
            k.add(cost);
            v.add(cost);
        });
    }
    const NO_MAP: bool = false;
    const STABLE: bool = false;
}

macro_rules! tuple {
    ($($name:ident),+) => {
        impl<$($name: Footprint),+> Footprint for ($($name,)+) {
            #[allow(non_snake_case)]
            fn add(&self, cost: &mut Cost) {
                let ($($name,)+) = self;
                $($name.add(cost);)+
            }
            const NO_MAP: bool = $($name::NO_MAP)&&+;
            const STABLE: bool = $($name::STABLE)&&+;
        }
    };
}

tuple!(A);
tuple!(A, B);
tuple!(A, B, C);
tuple!(A, B, C, D, E);

/// The cost of `value`.
pub(crate) fn cost_of<T: Footprint>(value: &T) -> Cost {
    let mut cost = Cost::default();
    value.add(&mut cost);
    cost
}
