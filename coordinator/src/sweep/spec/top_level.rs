//! Feeds a file's top-level mapping to a derived struct one key at a time, so that every error
//! knows its key: serde's own messages stay as they are, and [`super::document`] puts the key's
//! line on them. The struct names its keys itself (its fields, through `deserialize_struct`), so
//! no list of keys is kept beside it.

use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, Visitor};
use serde_yaml_ng::{Mapping, Value};

/// What is wrong with a file's top level, by key.
#[derive(Debug)]
pub(super) enum KeyError {
    /// A key that is not a string, as its YAML value prints.
    NotAString(String),
    /// A key that is not a field; `known`: the fields, in their order.
    Unknown { key: String, known: &'static [&'static str] },
    /// A field without a default that the file leaves out.
    Missing(&'static str),
    /// A value its field's type refuses, with serde's message.
    Value { key: String, message: String },
    /// Anything else serde says (a derived struct read from a mapping has nothing else to say).
    Other(String),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::NotAString(key) => write!(f, "keys are strings, found {key}"),
            KeyError::Unknown { key, .. } => write!(f, "unknown key `{key}`"),
            KeyError::Missing(key) => write!(f, "missing key `{key}`"),
            KeyError::Value { key, message } => write!(f, "`{key}`: {message}"),
            KeyError::Other(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for KeyError {}

impl de::Error for KeyError {
    fn custom<T: fmt::Display>(message: T) -> Self {
        KeyError::Other(message.to_string())
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        KeyError::Unknown { key: field.into(), known: expected }
    }

    fn missing_field(field: &'static str) -> Self {
        KeyError::Missing(field)
    }
}

/// Reads `T` from `map`. Keys that are not fields come first, in the file's order, so that a wrong
/// key is reported before any value; then the fields, in their order, whatever their order in the
/// file: a file with several wrong values is told about the first key, and a missing key (serde
/// looks for those last) after them.
pub(super) fn deserialize<T: DeserializeOwned>(map: &Mapping) -> Result<T, KeyError> {
    T::deserialize(TopLevel(map))
}

struct TopLevel<'a>(&'a Mapping);

impl<'de> de::Deserializer<'de> for TopLevel<'_> {
    type Error = KeyError;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, KeyError> {
        let place = |key: &Value| key.as_str().and_then(|k| fields.iter().position(|f| *f == k));
        let mut entries: Vec<(&Value, &Value)> = self.0.iter().collect();
        // Stable: keys that are not fields keep the file's order among themselves.
        entries.sort_by_key(|(key, _)| place(key).map_or(0, |i| i + 1));
        visitor.visit_map(Entries { entries: entries.into_iter(), value: None })
    }

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, KeyError> {
        visitor.visit_map(Entries { entries: self.0.iter().collect::<Vec<_>>().into_iter(), value: None })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option
        unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

/// The entries in the order they are read, and the value of the key just read.
struct Entries<'a> {
    entries: std::vec::IntoIter<(&'a Value, &'a Value)>,
    value: Option<(&'a str, &'a Value)>,
}

impl<'de> MapAccess<'de> for Entries<'_> {
    type Error = KeyError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, KeyError> {
        let Some((key, value)) = self.entries.next() else { return Ok(None) };
        let Some(name) = key.as_str() else { return Err(KeyError::NotAString(format!("{key:?}"))) };
        self.value = Some((name, value));
        seed.deserialize(name.into_deserializer()).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, KeyError> {
        let (key, value) =
            self.value.take().ok_or_else(|| KeyError::Other("a value before its key".into()))?;
        seed.deserialize(value.clone())
            .map_err(|e| KeyError::Value { key: key.into(), message: e.to_string() })
    }
}
