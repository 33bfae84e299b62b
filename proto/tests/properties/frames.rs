//! Every frame kind survives the codec unchanged, the request id is
//! readable without knowing the request's kind, and compact
//! acknowledgements convert back exactly (and are checked when they come
//! from a peer).

use proptest::prelude::*;
use sluice_proto::frame::{self, LENGTH_PREFIX_BYTES};
use sluice_proto::*;

use crate::config;
use crate::strategies::{client_frame, compact_ack, delivery_frame, publish_ack, server_frame};

fn round_trip<T>(value: &T) -> Result<(), TestCaseError>
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let bytes = frame::encode(value, DEFAULT_MAX_FRAME_BYTES)
        .map_err(|e| TestCaseError::fail(format!("encode: {e}")))?;
    let prefix: [u8; LENGTH_PREFIX_BYTES] = bytes[..LENGTH_PREFIX_BYTES].try_into().unwrap();
    prop_assert_eq!(
        u32::from_be_bytes(prefix) as usize,
        bytes.len() - LENGTH_PREFIX_BYTES
    );
    let back: T = frame::decode_one(&bytes, DEFAULT_MAX_FRAME_BYTES)
        .map_err(|e| TestCaseError::fail(format!("decode: {e}")))?;
    prop_assert_eq!(&back, value);
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn client_frames_round_trip(f in client_frame()) {
        round_trip(&f)?;
        // The id of a request is readable without knowing its kind.
        let bytes = frame::encode(&f, DEFAULT_MAX_FRAME_BYTES).unwrap();
        let id = match &f {
            ClientFrame::Request(r) => Some(r.id),
            ClientFrame::Hello(_) => None,
        };
        prop_assert_eq!(request_id_of(&bytes[LENGTH_PREFIX_BYTES..]), id);
    }

    #[test]
    fn server_frames_round_trip(f in server_frame()) {
        round_trip(&f)?;
    }

    #[test]
    fn delivery_frames_round_trip(f in delivery_frame()) {
        round_trip(&f)?;
    }

    #[test]
    fn compact_acks_convert_back_exactly(ack in publish_ack()) {
        let n = ack.outcomes.len();
        let compact = CompactAck::from_ack(ack.clone());
        round_trip(&compact)?;
        prop_assert_eq!(compact.into_ack(n), Ok(ack));
    }

    /// A compact acknowledgement from a peer is checked, never trusted:
    /// whatever its ranges say, no panic, and success means one outcome
    /// per message.
    #[test]
    fn hostile_compact_acks_are_refused_not_panicking(ack in compact_ack(), n in 0usize..8) {
        if let Ok(plain) = ack.into_ack(n) {
            prop_assert_eq!(plain.outcomes.len(), n);
        }
    }
}
