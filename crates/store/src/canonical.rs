//! The log's canonical encoding: the bytes each record contributes to the tamper-evident
//! tree, and what auditors verify offline (see `docs/log-format.md`).
//!
//! A record's **leaf** is one line of JSON:
//!
//! ```text
//! {"actor":{…},"at_ms":1765000000000,"event":{"type":"tenant-created",…},"seq":2,"tenant":"acme","v":1}
//! ```
//!
//! * `v` is the format version, [`LOG_FORMAT`]; a later version that changes the shape
//!   bumps it and keeps reading every earlier one.
//! * Object keys are in byte order at every depth, with no insignificant whitespace;
//!   strings are escaped as `serde_json` escapes them; integers are decimal; floats are
//!   the shortest form that reads back to the same value. Absent optional fields are left
//!   out, never written `null`.
//! * Secrets never enter a leaf: the keys of the workload-id cipher in the log's first
//!   record are replaced by `id_commitment`, the SHA-256 (hex) of the stored record's
//!   keys, so an exported leaf reveals nothing, and a changed key still changes the leaf.
//!
//! The encoding depends only on the record, so the server, `gigawatt audit export` and
//! any later version compute the same bytes.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::event::{LogEvent, Record};

/// The version of the log format this build writes (the `v` of every leaf).
pub const LOG_FORMAT: u32 = 1;

impl Record {
    /// The record's canonical bytes (its Merkle leaf): see the module docs.
    #[must_use]
    pub fn leaf(&self) -> Vec<u8> {
        let mut event = serde_json::to_value(&self.event).unwrap_or(Value::Null);
        if let LogEvent::Initialized { id_key, id_secret } = &self.event
            && let Some(o) = event.as_object_mut()
        {
            o.remove("id_key");
            o.remove("id_secret");
            let mut h = Sha256::new();
            h.update(id_key.to_be_bytes());
            h.update(id_secret.as_deref().unwrap_or("").as_bytes());
            o.insert("id_commitment".into(), Value::String(crate::view::hex(&h.finalize())));
        }
        let mut leaf = serde_json::Map::new();
        leaf.insert("v".into(), Value::from(LOG_FORMAT));
        leaf.insert("seq".into(), Value::from(self.seq));
        leaf.insert("at_ms".into(), Value::from(self.at_ms));
        if let Some(t) = &self.tenant {
            leaf.insert("tenant".into(), Value::String(t.clone()));
        }
        if let Some(a) = &self.actor {
            leaf.insert("actor".into(), serde_json::to_value(a).unwrap_or(Value::Null));
        }
        leaf.insert("event".into(), event);
        let mut out = Vec::with_capacity(256);
        write_canonical(&Value::Object(leaf), &mut out);
        out
    }
}

/// Writes `v` as canonical JSON: keys in byte order at every depth, no whitespace, no
/// `null` members (an absent optional field and a `null` one mean the same).
pub fn write_canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.iter().filter(|(_, v)| !v.is_null()).map(|(k, _)| k).collect();
            keys.sort_unstable();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(k, out);
                out.push(b':');
                write_canonical(&map[k], out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        Value::String(s) => write_string(s, out),
        other => out.extend_from_slice(other.to_string().as_bytes()),
    }
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(Value::String(s.to_string()).to_string().as_bytes());
}

/// Whether `bytes` are canonical JSON as [`write_canonical`] writes it: what a verifier
/// checks before it trusts a leaf's content.
#[must_use]
pub fn is_canonical(bytes: &[u8]) -> bool {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v) => {
            let mut again = Vec::with_capacity(bytes.len());
            write_canonical(&v, &mut again);
            again == bytes
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_sorted_nulls_dropped_and_secrets_committed() {
        let r = Record {
            seq: 1,
            at_ms: 5,
            tenant: None,
            actor: None,
            event: LogEvent::Initialized { id_key: 7, id_secret: Some("ab".repeat(32)) },
        };
        let leaf = String::from_utf8(r.leaf()).expect("utf-8");
        assert!(leaf.starts_with(r#"{"at_ms":5,"event":{"id_commitment":""#), "{leaf}");
        assert!(leaf.ends_with(r#""type":"initialized"},"seq":1,"v":1}"#), "{leaf}");
        assert!(!leaf.contains("abab"), "the secret never enters a leaf");
        assert!(is_canonical(leaf.as_bytes()));
        assert!(!is_canonical(b"{\"b\":1,\"a\":2}"));
        assert!(!is_canonical(b"{\"a\": 2}"));
        // Another key, another commitment.
        let other =
            Record { event: LogEvent::Initialized { id_key: 8, id_secret: Some("ab".repeat(32)) }, ..r };
        assert_ne!(other.leaf(), leaf.as_bytes());
    }
}
