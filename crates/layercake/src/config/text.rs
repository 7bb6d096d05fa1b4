//! serde adapters reading durations and sizes as text (`"5m"`, `"64MiB"`) or numbers
//! (seconds, bytes).

use serde::{Deserialize, Deserializer};

#[derive(Deserialize)]
#[serde(untagged)]
enum NumOrText {
    Num(u64),
    Text(String),
}

pub(super) mod duration {
    use super::*;
    use std::time::Duration;

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        match NumOrText::deserialize(d)? {
            NumOrText::Num(n) => Ok(Duration::from_secs(n)),
            NumOrText::Text(t) => {
                super::super::parse::duration("duration", &t).map_err(serde::de::Error::custom)
            }
        }
    }
}

pub(super) mod bytes {
    use super::*;

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        match NumOrText::deserialize(d)? {
            NumOrText::Num(n) => Ok(n),
            NumOrText::Text(t) => {
                super::super::parse::bytes("size", &t).map_err(serde::de::Error::custom)
            }
        }
    }
}

pub(super) mod ttls {
    use super::*;
    use std::collections::BTreeMap;
    use std::time::Duration;

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<(String, Duration)>, D::Error> {
        let map = BTreeMap::<String, NumOrText>::deserialize(d)?;
        map.into_iter()
            .map(|(ns, v)| {
                let ttl = match v {
                    NumOrText::Num(n) => Duration::from_secs(n),
                    NumOrText::Text(t) => {
                        super::super::parse::duration(&ns, &t).map_err(serde::de::Error::custom)?
                    }
                };
                Ok((ns, ttl))
            })
            .collect()
    }
}
