//! A serde `Deserializer` adapter that keeps a forged length inside a payload from allocating more than the
//! payload holds, and a decoded value from taking more memory than a limit.
//!
//! bincode 2's serde path allocates `vec![0; len]` for an owned string or byte buffer before it reads a byte,
//! and hands a sequence's declared length to serde as a preallocation hint; its own byte limit is a
//! compile-time constant and so cannot follow each frame's length. This adapter wraps every deserializer,
//! visitor and access object of one decode, and:
//! - turns `deserialize_string`/`deserialize_byte_buf` into their borrowing forms, which bincode checks against
//!   the bytes left before anything is allocated (the visitor then copies exactly what is there);
//! - refuses a sequence or map that declares more elements than the payload has bytes (every element of a
//!   type that is not zero-sized takes at least one byte), so a preallocation hint never exceeds the payload's
//!   length and a run of zero-sized elements cannot spin for 2^64 iterations;
//! - charges what the decoded value takes in memory to one account per decode, and stops the decode when the
//!   account runs dry: every element of a collection (a sequence or map, not a tuple or struct, whose fields
//!   live inline in their parent) costs the size of its type, and every owned string or byte buffer its length.
//!   This is what keeps a payload of `n` bytes from becoming `24 * n` bytes of empty vectors, or `n` copies of
//!   an enum whose largest variant is a megabyte;
//! - charges a value that lives behind a pointer (a `Box`, `Rc` or `Arc`), which serde does not show: each
//!   value is decoded into a slot whose size is known (the element, field or argument type it fills), and a
//!   struct, enum, tuple, option or collection bigger than its slot must live elsewhere, so it is charged its
//!   size. A vector of boxed megabyte-sized enums costs its megabytes, not 8 bytes an element;
//! - refuses a value nested more than [`MAX_DEPTH`] levels deep (each struct, enum, tuple, option and
//!   collection is a level), before decoding a recursive type could overflow the thread's stack.

use core::cell::Cell;
use core::marker::PhantomData;

use serde::de::{self, DeserializeSeed, Deserializer, Visitor};

mod access;

/// Deepest nesting of a decoded value: each struct, enum, tuple, option and collection inside another is a
/// level. 128, as serde_json's recursion limit: a recursive type decoded to this depth stays well within a
/// 2 MiB thread stack (tokio's default for its workers).
pub const MAX_DEPTH: usize = 128;

/// The memory one decode may still take, whether it ran out, and how deep the decode is.
pub(crate) struct Account {
    /// The payload's length in bytes: no collection may declare more elements.
    budget: usize,
    limit: usize,
    left: Cell<usize>,
    exceeded: Cell<bool>,
    /// Levels of compound values being decoded now.
    depth: Cell<usize>,
    too_deep: Cell<bool>,
    /// The size of the place the next value is decoded into (the type of the element, field or argument).
    slot: Cell<usize>,
}

impl Account {
    /// An account for a payload of `budget` bytes whose decoded value may take `limit` bytes.
    pub(crate) fn new(budget: usize, limit: usize) -> Account {
        Account {
            budget,
            limit,
            left: Cell::new(limit),
            exceeded: Cell::new(false),
            depth: Cell::new(0),
            too_deep: Cell::new(false),
            slot: Cell::new(0),
        }
    }

    /// Whether the decode stopped because the value was nested more than [`MAX_DEPTH`] levels deep.
    pub(crate) fn too_deep(&self) -> bool {
        self.too_deep.get()
    }

    /// The next value is decoded into a place of `size` bytes.
    #[inline(always)]
    fn slot(&self, size: usize) {
        self.slot.set(size);
    }

    /// Enters a compound value of `size` bytes: one level deeper, and charged its size if it does not fit its
    /// slot (it lives behind a pointer). Its parts are decoded into its own place, until their own slots are
    /// set.
    #[inline(always)]
    fn enter<E: de::Error>(&self, size: usize) -> Result<Level<'_>, E> {
        let depth = self.depth.get();
        if depth >= MAX_DEPTH {
            return Err(self.refuse_depth());
        }
        if size > self.slot.get() {
            self.charge(size)?;
        }
        self.slot.set(size);
        self.depth.set(depth + 1);
        Ok(Level(&self.depth))
    }

    #[cold]
    fn refuse_depth<E: de::Error>(&self) -> E {
        self.too_deep.set(true);
        E::custom(format_args!(
            "the value is nested more than {MAX_DEPTH} levels deep, the limit"
        ))
    }

    /// Whether the decode stopped because the value would have taken more than the limit.
    pub(crate) fn exceeded(&self) -> bool {
        self.exceeded.get()
    }

    #[inline(always)]
    fn charge<E: de::Error>(&self, bytes: usize) -> Result<(), E> {
        match self.left.get().checked_sub(bytes) {
            Some(left) => {
                self.left.set(left);
                Ok(())
            }
            None => Err(self.refuse()),
        }
    }

    #[cold]
    fn refuse<E: de::Error>(&self) -> E {
        self.exceeded.set(true);
        E::custom(format_args!(
            "the decoded value would take more than {} bytes of memory, the limit",
            self.limit
        ))
    }
}

/// One level of nesting, left when dropped.
struct Level<'a>(&'a Cell<usize>);

impl Drop for Level<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

/// Deserializes a `T` through the guard, charging `account`.
pub(crate) struct Seed<'a, T> {
    account: &'a Account,
    marker: PhantomData<fn() -> T>,
}

impl<'a, T> Seed<'a, T> {
    pub(crate) fn new(account: &'a Account) -> Seed<'a, T> {
        Seed {
            account,
            marker: PhantomData,
        }
    }
}

impl<'de, T: de::Deserialize<'de>> DeserializeSeed<'de> for Seed<'_, T> {
    type Value = T;
    #[inline(always)]
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        self.account.slot(core::mem::size_of::<T>());
        T::deserialize(Guard {
            inner: d,
            account: self.account,
        })
    }
}

/// What a wrapped visitor or access charges for what passes through it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Charge {
    /// Nothing: a scalar, or the fields of a tuple or struct, which live inline in their parent.
    Nothing,
    /// Each element (or key and value) of a collection: the size of its type.
    Elements,
    /// An owned string or byte buffer: its length.
    Bytes,
    /// A self-describing value (`deserialize_any`, as `serde_json::Value` and untagged enums decode): both of
    /// the above, since its visitor may keep each element of the collection it turns out to be and copy each
    /// string it is shown. A visitor that keeps a string borrowed is charged for it too: the safe side.
    Any,
}

/// The wrapped deserializer.
struct Guard<'a, D> {
    inner: D,
    account: &'a Account,
}

/// A wrapped visitor, or a wrapped access object.
struct Wrap<'a, V> {
    inner: V,
    account: &'a Account,
    charge: Charge,
}

/// A wrapped seed, for elements, keys, values and variants.
struct WrapSeed<'a, S> {
    inner: S,
    account: &'a Account,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for WrapSeed<'_, S> {
    type Value = S::Value;
    #[inline(always)]
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.account.slot(core::mem::size_of::<S::Value>());
        self.inner.deserialize(Guard {
            inner: d,
            account: self.account,
        })
    }
}

impl<'a, V> Wrap<'a, V> {
    #[inline(always)]
    fn new(inner: V, account: &'a Account) -> Wrap<'a, V> {
        Wrap {
            inner,
            account,
            charge: Charge::Nothing,
        }
    }

    #[inline(always)]
    fn charging(inner: V, account: &'a Account, charge: Charge) -> Wrap<'a, V> {
        Wrap {
            inner,
            account,
            charge,
        }
    }
}

macro_rules! forward_deserialize {
    ($($method:ident),* $(,)?) => {$(
        #[inline(always)]
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            self.inner.$method(Wrap::new(visitor, self.account))
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Guard<'_, D> {
    type Error = D::Error;

    #[inline(always)]
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.inner
            .deserialize_any(Wrap::charging(visitor, self.account, Charge::Any))
    }

    forward_deserialize!(
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_i128,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_u128,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_str,
        deserialize_bytes,
        deserialize_unit,
        deserialize_identifier,
        deserialize_ignored_any,
    );

    #[inline(always)]
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        let _level = self.account.enter(core::mem::size_of::<V::Value>())?;
        self.inner
            .deserialize_option(Wrap::new(visitor, self.account))
    }

    #[inline(always)]
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        let _level = self.account.enter(core::mem::size_of::<V::Value>())?;
        self.inner
            .deserialize_seq(Wrap::charging(visitor, self.account, Charge::Elements))
    }

    #[inline(always)]
    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        let _level = self.account.enter(core::mem::size_of::<V::Value>())?;
        self.inner
            .deserialize_map(Wrap::charging(visitor, self.account, Charge::Elements))
    }

    #[inline(always)]
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        // Borrowing checks the length against the bytes left before the visitor copies them.
        self.inner
            .deserialize_str(Wrap::charging(visitor, self.account, Charge::Bytes))
    }

    #[inline(always)]
    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.inner
            .deserialize_bytes(Wrap::charging(visitor, self.account, Charge::Bytes))
    }

    #[inline(always)]
    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner
            .deserialize_unit_struct(name, Wrap::new(visitor, self.account))
    }

    #[inline(always)]
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let _level = self.account.enter(core::mem::size_of::<V::Value>())?;
        self.inner
            .deserialize_newtype_struct(name, Wrap::new(visitor, self.account))
    }

    #[inline(always)]
    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let _level = self.account.enter(core::mem::size_of::<V::Value>())?;
        self.inner
            .deserialize_tuple(len, Wrap::new(visitor, self.account))
    }

    #[inline(always)]
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let _level = self.account.enter(core::mem::size_of::<V::Value>())?;
        self.inner
            .deserialize_tuple_struct(name, len, Wrap::new(visitor, self.account))
    }

    #[inline(always)]
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let _level = self.account.enter(core::mem::size_of::<V::Value>())?;
        self.inner
            .deserialize_struct(name, fields, Wrap::new(visitor, self.account))
    }

    #[inline(always)]
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let _level = self.account.enter(core::mem::size_of::<V::Value>())?;
        self.inner
            .deserialize_enum(name, variants, Wrap::new(visitor, self.account))
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}
