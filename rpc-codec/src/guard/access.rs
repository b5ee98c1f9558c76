//! The guard's side of the values serde hands back: [`Wrap`] as a visitor (charging owned strings and byte
//! buffers, refusing collections that declare more elements than the payload holds) and as the sequence, map,
//! enum and variant access objects that charge each element and wrap each nested seed.

use core::fmt;

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};

use super::{Charge, Guard, Wrap, WrapSeed};

macro_rules! forward_visit {
    ($($method:ident($ty:ty)),* $(,)?) => {$(
        #[inline(always)]
        fn $method<E: de::Error>(self, v: $ty) -> Result<Self::Value, E> {
            self.inner.$method(v)
        }
    )*};
}

/// Refuses a declared element count that the payload cannot hold.
fn check_len<E: de::Error>(what: &str, declared: Option<usize>, budget: usize) -> Result<(), E> {
    match declared {
        Some(n) if n > budget => Err(E::custom(format_args!(
            "{what} declares {n} elements but the payload holds only {budget} bytes"
        ))),
        _ => Ok(()),
    }
}

impl<V> Wrap<'_, V> {
    /// Charges an owned string's or byte buffer's length (a borrowed one takes no memory).
    #[inline(always)]
    fn charge_bytes<E: de::Error>(&self, len: usize) -> Result<(), E> {
        if matches!(self.charge, Charge::Bytes | Charge::Any) {
            self.account.charge(len)
        } else {
            Ok(())
        }
    }

    /// Charges one element of a collection, of type `T`.
    #[inline(always)]
    fn charge_element<T, E: de::Error>(&self) -> Result<(), E> {
        if matches!(self.charge, Charge::Elements | Charge::Any) {
            self.account.charge(core::mem::size_of::<T>())
        } else {
            Ok(())
        }
    }
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    forward_visit!(
        visit_bool(bool),
        visit_i8(i8),
        visit_i16(i16),
        visit_i32(i32),
        visit_i64(i64),
        visit_i128(i128),
        visit_u8(u8),
        visit_u16(u16),
        visit_u32(u32),
        visit_u64(u64),
        visit_u128(u128),
        visit_f32(f32),
        visit_f64(f64),
        visit_char(char),
        visit_string(String),
        visit_byte_buf(Vec<u8>),
    );

    #[inline(always)]
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        self.charge_bytes(v.len())?;
        self.inner.visit_str(v)
    }

    #[inline(always)]
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        self.charge_bytes(v.len())?;
        self.inner.visit_borrowed_str(v)
    }

    #[inline(always)]
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
        self.charge_bytes(v.len())?;
        self.inner.visit_bytes(v)
    }

    #[inline(always)]
    fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<Self::Value, E> {
        self.charge_bytes(v.len())?;
        self.inner.visit_borrowed_bytes(v)
    }

    #[inline(always)]
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        self.inner.visit_none()
    }

    #[inline(always)]
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.inner.visit_unit()
    }

    #[inline(always)]
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.inner.visit_some(Guard {
            inner: d,
            account: self.account,
        })
    }

    #[inline(always)]
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.inner.visit_newtype_struct(Guard {
            inner: d,
            account: self.account,
        })
    }

    #[inline(always)]
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        check_len("sequence", seq.size_hint(), self.account.budget)?;
        let charge = self.charge;
        self.inner
            .visit_seq(Wrap::charging(seq, self.account, charge))
    }

    #[inline(always)]
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        check_len("map", map.size_hint(), self.account.budget)?;
        let charge = self.charge;
        self.inner
            .visit_map(Wrap::charging(map, self.account, charge))
    }

    #[inline(always)]
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        self.inner.visit_enum(Wrap::new(data, self.account))
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Wrap<'_, A> {
    type Error = A::Error;

    #[inline(always)]
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        let element = self.inner.next_element_seed(WrapSeed {
            inner: seed,
            account: self.account,
        })?;
        // Charged once the element is decoded, before the collection stores it (and grows for it).
        if element.is_some() {
            self.charge_element::<T::Value, A::Error>()?;
        }
        Ok(element)
    }

    #[inline(always)]
    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Wrap<'_, A> {
    type Error = A::Error;

    #[inline(always)]
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let key = self.inner.next_key_seed(WrapSeed {
            inner: seed,
            account: self.account,
        })?;
        if key.is_some() {
            self.charge_element::<K::Value, A::Error>()?;
        }
        Ok(key)
    }

    #[inline(always)]
    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        let value = self.inner.next_value_seed(WrapSeed {
            inner: seed,
            account: self.account,
        })?;
        self.charge_element::<S::Value, A::Error>()?;
        Ok(value)
    }

    #[inline(always)]
    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'a, 'de, A: EnumAccess<'de>> EnumAccess<'de> for Wrap<'a, A> {
    type Error = A::Error;
    type Variant = Wrap<'a, A::Variant>;

    #[inline(always)]
    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self::Variant), A::Error> {
        let account = self.account;
        let (value, variant) = self.inner.variant_seed(WrapSeed {
            inner: seed,
            account,
        })?;
        Ok((value, Wrap::new(variant, account)))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Wrap<'_, A> {
    type Error = A::Error;

    #[inline(always)]
    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    #[inline(always)]
    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, A::Error> {
        self.inner.newtype_variant_seed(WrapSeed {
            inner: seed,
            account: self.account,
        })
    }

    #[inline(always)]
    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.inner
            .tuple_variant(len, Wrap::new(visitor, self.account))
    }

    #[inline(always)]
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.inner
            .struct_variant(fields, Wrap::new(visitor, self.account))
    }
}
