//! The payloads every benchmark uses, so that figures compare like with like: a small struct (~32 bytes
//! encoded), a mixed message (~1 KiB) and a 64 KiB byte payload (marked `serde_bytes`, as the codec's docs ask).

use serde::{Deserialize, Serialize};

/// A small call argument, about 32 bytes encoded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Small {
    /// An id.
    pub id: u64,
    /// A measurement.
    pub value: f64,
    /// A short name.
    pub name: String,
    /// A flag.
    pub urgent: bool,
    /// A small counter.
    pub tag: u32,
}

/// A small message with typical values.
pub fn small() -> Small {
    Small {
        id: 1_234_567_890,
        value: 3.25,
        name: "sensor-7".to_owned(),
        urgent: true,
        tag: 42,
    }
}

/// One line item of [`Mixed`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// Stock-keeping unit.
    pub sku: String,
    /// How many.
    pub quantity: u32,
    /// Price in cents.
    pub cents: i64,
}

/// A status, to exercise enum encoding.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum State {
    /// Created.
    New,
    /// Being worked on by someone.
    Assigned {
        /// Who.
        to: String,
    },
    /// Done, with a score.
    Done(u8),
}

/// A mixed message of about 1 KiB: strings, integers, floats, options, an enum, a list of structs and a
/// byte field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Mixed {
    /// An id.
    pub id: u64,
    /// The customer's name.
    pub customer: String,
    /// Free text.
    pub note: Option<String>,
    /// Line items.
    pub items: Vec<Item>,
    /// Readings.
    pub readings: Vec<f32>,
    /// Labels.
    pub labels: Vec<(String, String)>,
    /// Where it stands.
    pub state: State,
    /// An opaque attachment.
    #[serde(with = "serde_bytes")]
    pub attachment: Vec<u8>,
}

/// A mixed message of about 1 KiB.
pub fn mixed() -> Mixed {
    Mixed {
        id: 987_654_321_012,
        customer: "Ada Lovelace & Co. Analytical Engines".to_owned(),
        note: Some("deliver to the side entrance, ring twice".to_owned()),
        items: (0..12)
            .map(|i| Item {
                sku: format!("SKU-{:06}", i * 7919),
                quantity: i + 1,
                cents: 1999 * i64::from(i) - 500,
            })
            .collect(),
        readings: (0..64).map(|i| i as f32 * 0.5).collect(),
        labels: (0..8)
            .map(|i| (format!("label-{i}"), format!("value-{}", i * i)))
            .collect(),
        state: State::Assigned {
            to: "warehouse-3".to_owned(),
        },
        attachment: (0..=255u8).collect(),
    }
}

/// A 64 KiB byte payload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Blob {
    /// The bytes.
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// A 64 KiB payload of varied bytes.
pub fn blob() -> Blob {
    Blob {
        data: (0..64 * 1024u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded_len<T: Serialize>(v: &T) -> usize {
        bincode::serde::encode_to_vec(v, bincode::config::standard())
            .unwrap()
            .len()
    }

    #[test]
    fn messages_have_their_advertised_sizes() {
        let small = encoded_len(&small());
        assert!((24..=40).contains(&small), "small is {small} bytes");
        let mixed = encoded_len(&mixed());
        assert!((900..=1200).contains(&mixed), "mixed is {mixed} bytes");
        assert_eq!(encoded_len(&blob()), 64 * 1024 + 5);
    }
}
