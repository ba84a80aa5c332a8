//! The serde shape of the public data types (cargo feature `serde`), documented in the crate
//! docs: the parts that are not plain derives.

/// A holder's value: a string when it is UTF-8 (the usual case: `HOST:PID`, a URL), else an
/// array of byte values, so that any value survives a round trip.
pub(crate) mod value {
    use std::fmt;

    use serde::de::{self, SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(value: &[u8], s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(value) {
            Ok(text) => s.serialize_str(text),
            Err(_) => s.collect_seq(value),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_any(Bytes)
    }

    struct Bytes;

    impl<'de> Visitor<'de> for Bytes {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string or an array of byte values")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
            Ok(v.as_bytes().to_vec())
        }

        fn visit_string<E: de::Error>(self, v: String) -> Result<Vec<u8>, E> {
            Ok(v.into_bytes())
        }

        fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }

        fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
            while let Some(b) = seq.next_element::<u8>()? {
                out.push(b);
            }
            Ok(out)
        }
    }
}

/// A TTL left, in whole milliseconds (`null` when unknown); sub-millisecond parts are dropped.
pub(crate) mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(
        ttl: &Option<Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match ttl {
            Some(d) => s.serialize_some(&u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde::de::DeserializeOwned;
    use serde::Serialize;
    use serde_json::{json, Value};

    use crate::{FencingToken, Leader, LockStatus, LostReason, Waiting};

    /// `value` as JSON is `expected`, and reads back as `value`.
    fn round_trip<T>(value: T, expected: Value)
    where
        T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        let json = serde_json::to_value(&value).expect("serialize");
        assert_eq!(json, expected, "{value:?}");
        let text = serde_json::to_string(&value).expect("serialize");
        let back: T = serde_json::from_str(&text).expect("deserialize");
        assert_eq!(back, value, "{text}");
    }

    fn leader(value: &[u8]) -> Leader {
        Leader {
            key: "jobs/694d8c3b1f2e4a01".into(),
            value: value.to_vec(),
            token: FencingToken(7),
        }
    }

    #[test]
    fn fencing_token_is_a_number() {
        round_trip(FencingToken(42), json!(42));
        round_trip(FencingToken(u64::MAX), json!(u64::MAX));
    }

    #[test]
    fn lost_reason_is_a_snake_case_string() {
        round_trip(LostReason::LeaseExpired, json!("lease_expired"));
        round_trip(LostReason::RenewalDeadline, json!("renewal_deadline"));
        round_trip(LostReason::EntryDeleted, json!("entry_deleted"));
        round_trip(LostReason::SessionClosed, json!("session_closed"));
        assert!(serde_json::from_str::<LostReason>("\"gone\"").is_err());
    }

    #[test]
    fn leader_value_is_a_string_or_bytes() {
        let text = json!({"key": "jobs/694d8c3b1f2e4a01", "value": "host-a:8080", "token": 7});
        round_trip(leader(b"host-a:8080"), text);
        round_trip(
            leader(&[0xff, 0, b'a']),
            json!({"key": "jobs/694d8c3b1f2e4a01", "value": [255, 0, 97], "token": 7}),
        );
        round_trip(
            leader(b""),
            json!({"key": "jobs/694d8c3b1f2e4a01", "value": "", "token": 7}),
        );
    }

    #[test]
    fn lock_status_is_flat_with_ttl_in_milliseconds() {
        let status = LockStatus {
            name: "jobs".into(),
            holder: leader(b"host-a:8080"),
            waiters: 2,
            holder_ttl: Some(Duration::from_millis(9_400)),
            permits: None,
            holders: Vec::new(),
            rwlock: false,
            readers: 0,
            registered: false,
        };
        round_trip(
            status.clone(),
            json!({
                "name": "jobs", "key": "jobs/694d8c3b1f2e4a01", "value": "host-a:8080",
                "token": 7, "waiters": 2, "ttl_ms": 9400, "rwlock": false, "readers": 0
            }),
        );
        let unknown = LockStatus {
            holder_ttl: None,
            ..status.clone()
        };
        round_trip(
            unknown.clone(),
            json!({
                "name": "jobs", "key": "jobs/694d8c3b1f2e4a01", "value": "host-a:8080",
                "token": 7, "waiters": 2, "ttl_ms": null, "rwlock": false, "readers": 0
            }),
        );
        let without_ttl = r#"{"name":"jobs","key":"jobs/694d8c3b1f2e4a01","value":"host-a:8080","token":7,"waiters":2}"#;
        let read: LockStatus =
            serde_json::from_str(without_ttl).expect("ttl_ms, rwlock and readers are optional");
        assert_eq!(read, unknown);
        let semaphore = LockStatus {
            permits: Some(3),
            holders: vec![leader(b"host-a:8080")],
            ..status
        };
        round_trip(
            semaphore,
            json!({
                "name": "jobs", "key": "jobs/694d8c3b1f2e4a01", "value": "host-a:8080",
                "token": 7, "waiters": 2, "ttl_ms": 9400, "rwlock": false, "readers": 0,
                "permits": 3,
                "holders": [{"key": "jobs/694d8c3b1f2e4a01", "value": "host-a:8080", "token": 7}]
            }),
        );
    }

    #[test]
    fn waiting_is_tagged_by_state() {
        round_trip(Waiting::LocalQueue, json!({"state": "local_queue"}));
        round_trip(Waiting::Store, json!({"state": "store"}));
        round_trip(
            Waiting::Queued {
                ahead: Some("jobs/694d".into()),
            },
            json!({"state": "queued", "ahead": "jobs/694d"}),
        );
        round_trip(
            Waiting::Queued { ahead: None },
            json!({"state": "queued", "ahead": null}),
        );
        round_trip(
            Waiting::Retrying {
                last_error: "no leader".into(),
            },
            json!({"state": "retrying", "last_error": "no leader"}),
        );
    }
}
