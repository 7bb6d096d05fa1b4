//! Fuzz the backplane message decoders (binary and base64 text).
//!
//! Contract checked: never a panic; a failure is always `Corrupt`; whatever decodes is
//! canonical (re-encoding gives the same bytes).
#![no_main]

use layercake_core::ErrorKind;
use layercake_core::backplane::Message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match Message::decode(data) {
        Ok(m) => assert_eq!(m.encode().expect("re-encodes"), data, "non-canonical message"),
        Err(e) => assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}"),
    }
    if let Ok(text) = std::str::from_utf8(data) {
        match Message::decode_text(text) {
            Ok(m) => {
                let again = Message::decode_text(&m.encode_text().expect("re-encodes"));
                assert_eq!(again.expect("round trip"), m);
            }
            Err(e) => assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}"),
        }
    }
});
