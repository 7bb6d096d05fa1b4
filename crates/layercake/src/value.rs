//! Typed ↔ erased values: what a read decoded (`Value`), the decode of an entry into `T`,
//! and the downcast of a value shared by a single-flight load back to `T`.

use std::sync::Arc;

use layercake_core::{Codec, Entry, Error, Result};
use serde::de::DeserializeOwned;

use crate::flight::AnyValue;

/// A decoded read.
pub(crate) enum Value<T> {
    Some(Arc<T>),
    Negative,
}

impl<T> Clone for Value<T> {
    fn clone(&self) -> Self {
        match self {
            Value::Some(a) => Value::Some(a.clone()),
            Value::Negative => Value::Negative,
        }
    }
}

impl<T: Send + Sync + 'static> Value<T> {
    pub(crate) fn into_any(self) -> AnyValue {
        match self {
            Value::Some(a) => Some(a),
            Value::Negative => None,
        }
    }
}

/// A type-erased value back to `T` (`Ok(None)` = negative; `Err` = another type).
pub(crate) fn downcast_value<T: Send + Sync + 'static>(v: AnyValue) -> Result<Option<Arc<T>>> {
    match v {
        None => Ok(None),
        Some(a) => a
            .downcast::<T>()
            .map(Some)
            .map_err(|_| Error::codec("a concurrent load of this key produced another type")),
    }
}

impl<T> Value<T> {
    pub(crate) fn into_option(self) -> Option<Arc<T>> {
        match self {
            Value::Some(a) => Some(a),
            Value::Negative => None,
        }
    }
}

pub(crate) fn decode_typed<T>(codec: &Codec, entry: &Entry) -> Result<Value<T>>
where
    T: DeserializeOwned + Send + Sync + 'static,
{
    if entry.is_negative() {
        return Ok(Value::Negative);
    }
    if let Some(d) = entry.decoded()
        && let Ok(a) = d.clone().downcast::<T>()
    {
        return Ok(Value::Some(a));
    }
    codec
        .decode::<T>(&entry.value, entry.format, entry.compression)
        .map(|v| Value::Some(Arc::new(v)))
}
