//! Fuzz the envelope decoder: any bytes, read as the entry of a fixed key and of any key.
//!
//! Contract checked: never a panic; a failure is always `Corrupt`; whatever decodes is
//! canonical (re-encoding gives the same bytes) and holds the key it was asked for.
#![no_main]

use layercake_core::envelope::{self, EnvelopeLimits};
use layercake_core::{Bytes, ErrorKind, Key};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(key) = Key::new("fuzz:v1:key") else { return };
    match envelope::decode(&key, Bytes::copy_from_slice(data)) {
        Ok(entry) => {
            let again = envelope::encode(&key, &entry).expect("a decoded entry re-encodes");
            assert_eq!(again, data, "the decoder accepted a non-canonical envelope");
        }
        Err(e) => assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}"),
    }
    let limits = EnvelopeLimits::default();
    match envelope::decode_any(Bytes::copy_from_slice(data), &limits) {
        Ok((k, entry)) => {
            let again = envelope::encode(&k, &entry).expect("a decoded entry re-encodes");
            assert_eq!(again, data, "decode_any accepted a non-canonical envelope");
        }
        Err(e) => assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}"),
    }
    let _ = envelope::peek_header(data);
});
