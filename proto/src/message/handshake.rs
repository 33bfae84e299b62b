//! The handshake that opens every connection: the client's [`Hello`], the
//! broker's [`Welcome`], and the optional features they agree on (each side
//! lists the features it knows; the broker answers with those it will use).

use serde::{Deserialize, Serialize};

/// Opens a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// The client's protocol version ([`crate::PROTOCOL_VERSION`]).
    pub version: u16,
    /// A bearer token, when the broker requires one.
    #[serde(default)]
    pub token: Option<String>,
    /// A name for logs and metrics.
    #[serde(default)]
    pub client_name: String,
    /// Optional protocol features the client supports
    /// ([`FEATURE_COMPACT_DELIVERY`]); the broker uses those it knows.
    #[serde(default)]
    pub features: Vec<String>,
}

/// Accepts a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    /// The protocol version the broker will speak.
    pub version: u16,
    /// The broker's name and version, for people.
    pub server: String,
    /// The largest frame body the broker accepts; larger frames are refused.
    pub max_frame_bytes: u32,
    /// The features of the client's `Hello` the broker will use.
    #[serde(default)]
    pub features: Vec<String>,
}

/// The feature a broker lists in `Welcome` when it takes
/// [`RequestBody::PublishCompact`](crate::RequestBody::PublishCompact)
/// (clients list it in `Hello` too).
pub const FEATURE_COMPACT_PUBLISH: &str = "compact-publish";

/// The `Hello` feature that asks for
/// [`DeliveryFrame::Compact`](crate::DeliveryFrame::Compact).
pub const FEATURE_COMPACT_DELIVERY: &str = "compact-delivery";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::decode_body;

    /// The compatibility rule on the handshake itself: a peer that sends
    /// only the required fields is understood, the optional ones default.
    #[test]
    fn a_handshake_with_only_the_required_fields_decodes() {
        #[derive(Serialize)]
        struct BareHello {
            version: u16,
        }
        let body = rmp_serde::to_vec_named(&BareHello { version: 1 }).unwrap();
        let hello: Hello = decode_body(&body).unwrap();
        assert_eq!(
            hello,
            Hello {
                version: 1,
                token: None,
                client_name: String::new(),
                features: vec![],
            }
        );

        #[derive(Serialize)]
        struct BareWelcome {
            version: u16,
            server: String,
            max_frame_bytes: u32,
        }
        let body = rmp_serde::to_vec_named(&BareWelcome {
            version: 1,
            server: "sluice".into(),
            max_frame_bytes: 1024,
        })
        .unwrap();
        let welcome: Welcome = decode_body(&body).unwrap();
        assert!(welcome.features.is_empty());
    }
}
