//! Property tests (proptest) for the parsers that read untrusted input: the launcher's flags
//! and the control protocol. Bounded: proptest's default 256 cases per property, with the
//! regressions it finds kept in tests/properties.proptest-regressions.

use crac_shim::cli;
use crac_shim_proto::{Message, Request};
use proptest::prelude::*;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

fn java_like_arg() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"-cp".to_vec()),
        Just(b"-jar".to_vec()),
        Just(b"-m".to_vec()),
        Just(b"Main".to_vec()),
        Just(b"@args".to_vec()),
        "-XX:[+-]?CRaC[A-Za-z]{0,30}(=[ -~]{0,20})?".prop_map(String::into_bytes),
        "-D[a-z.]{1,10}=[ -~]{0,10}".prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..40),
    ]
}

proptest! {
    /// Whatever the arguments, the parser answers (no panic), and without a CRaC option before
    /// the main class everything passes through untouched.
    #[test]
    fn flag_parser_never_panics_and_passes_plain_lines_through(args in prop::collection::vec(java_like_arg(), 0..12)) {
        let args: Vec<OsString> = args.into_iter().map(OsString::from_vec).collect();
        if let Ok(inv) = cli::parse(args.clone()) {
            if inv.passthrough {
                prop_assert_eq!(inv.java_args, args);
            }
        }
    }

    /// Every message encodes to something that decodes back to it.
    #[test]
    fn messages_round_trip(kind in "[a-z_]{1,12}", fields in prop::collection::vec(("[A-Za-z0-9_]{1,12}", any::<String>()), 0..8)) {
        let mut m = Message::new(&kind);
        for (k, v) in &fields {
            m.push(k, v);
        }
        prop_assert_eq!(Message::decode(&m.encode()), Ok(m));
    }

    /// Arbitrary bytes never make the decoders panic.
    #[test]
    fn decoders_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = Message::decode(&bytes);
        let _ = Request::decode(&bytes);
    }
}
