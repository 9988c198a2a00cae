//! KV reads and writes (consul-api.md §5): base64 values decoded, `null` as empty, 404 as
//! "absent" with its index kept, CAS writes answering `true`/`false`.

use base64::Engine as _;
use bytes::Bytes;
use http::{Method, StatusCode};
use serde::Deserialize;

use super::client::{escape, Query};
use super::{ConsulClient, QueryOptions, QueryResponse};
use crate::error::DiscoveryError;

/// One KV entry with its value decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvPair {
    /// Full key.
    pub key: String,
    /// Raw bytes (empty when Consul sent `null`).
    pub value: Vec<u8>,
    /// Opaque client flags.
    pub flags: u64,
    /// Index of creation (survives updates).
    pub create_index: u64,
    /// Index of the last write: the value to pass as `cas`.
    pub modify_index: u64,
    /// Times the key was locked.
    pub lock_index: u64,
    /// Lock-holding session, if any.
    pub session: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawPair {
    key: String,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    flags: u64,
    #[serde(default)]
    create_index: u64,
    #[serde(default)]
    modify_index: u64,
    #[serde(default)]
    lock_index: u64,
    #[serde(default)]
    session: Option<String>,
}

impl RawPair {
    fn decode(self) -> Result<KvPair, DiscoveryError> {
        let value = match self.value {
            None => Vec::new(),
            Some(text) => base64::engine::general_purpose::STANDARD
                .decode(text.as_bytes())
                .map_err(|e| DiscoveryError::Base64 {
                    key: self.key.clone(),
                    reason: e.to_string(),
                })?,
        };
        Ok(KvPair {
            key: self.key,
            value,
            flags: self.flags,
            create_index: self.create_index,
            modify_index: self.modify_index,
            lock_index: self.lock_index,
            session: self.session.filter(|s| !s.is_empty()),
        })
    }
}

fn kv_path(key: &str) -> String {
    format!("/v1/kv/{}", escape(key, true))
}

impl ConsulClient {
    /// Reads one key: `None` when absent (404), with the index to block on for its creation.
    pub async fn kv_get(
        &self,
        key: &str,
        opts: QueryOptions,
    ) -> Result<QueryResponse<Option<KvPair>>, DiscoveryError> {
        let resp = self.read(&kv_path(key), Vec::new(), opts).await?;
        if resp.status == StatusCode::NOT_FOUND {
            return Ok(QueryResponse {
                value: None,
                meta: resp.meta,
            });
        }
        let resp = resp.success()?;
        let raw: Option<Vec<RawPair>> = resp.json()?;
        let value = raw
            .unwrap_or_default()
            .into_iter()
            .next()
            .map(RawPair::decode)
            .transpose()?;
        Ok(QueryResponse {
            value,
            meta: resp.meta,
        })
    }

    /// Reads every key under `prefix` (`?recurse`), sorted by key; 404 is an empty list.
    pub async fn kv_list(
        &self,
        prefix: &str,
        opts: QueryOptions,
    ) -> Result<QueryResponse<Vec<KvPair>>, DiscoveryError> {
        let resp = self
            .read(&kv_path(prefix), vec![("recurse", None)], opts)
            .await?;
        if resp.status == StatusCode::NOT_FOUND {
            return Ok(QueryResponse {
                value: Vec::new(),
                meta: resp.meta,
            });
        }
        let resp = resp.success()?;
        let raw: Option<Vec<RawPair>> = resp.json()?;
        let value = raw
            .unwrap_or_default()
            .into_iter()
            .map(RawPair::decode)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(QueryResponse {
            value,
            meta: resp.meta,
        })
    }

    /// Key names under `prefix` (`?keys`), truncated after `separator`; 404 is an empty list.
    pub async fn kv_keys(
        &self,
        prefix: &str,
        separator: Option<&str>,
        opts: QueryOptions,
    ) -> Result<QueryResponse<Vec<String>>, DiscoveryError> {
        let mut q: Query<'_> = vec![("keys", None)];
        if let Some(sep) = separator {
            q.push(("separator", Some(sep.to_owned())));
        }
        let resp = self.read(&kv_path(prefix), q, opts).await?;
        if resp.status == StatusCode::NOT_FOUND {
            return Ok(QueryResponse {
                value: Vec::new(),
                meta: resp.meta,
            });
        }
        let resp = resp.success()?;
        let value: Option<Vec<String>> = resp.json()?;
        Ok(QueryResponse {
            value: value.unwrap_or_default(),
            meta: resp.meta,
        })
    }

    /// Writes `key`. `cas: Some(0)` creates only if absent; `Some(n)` writes only if the key's
    /// ModifyIndex is `n`. Returns `false` on a CAS miss (re-read and retry), `true` otherwise.
    pub async fn kv_put(
        &self,
        key: &str,
        value: &[u8],
        cas: Option<u64>,
    ) -> Result<bool, DiscoveryError> {
        self.kv_put_with_flags(key, value, None, cas).await
    }

    /// [`ConsulClient::kv_put`] with opaque `flags`.
    pub async fn kv_put_with_flags(
        &self,
        key: &str,
        value: &[u8],
        flags: Option<u64>,
        cas: Option<u64>,
    ) -> Result<bool, DiscoveryError> {
        let mut q: Query<'_> = Vec::new();
        if let Some(flags) = flags {
            q.push(("flags", Some(flags.to_string())));
        }
        if let Some(cas) = cas {
            q.push(("cas", Some(cas.to_string())));
        }
        let resp = self
            .write(Method::PUT, &kv_path(key), q, Bytes::copy_from_slice(value))
            .await?
            .success()?;
        resp.json()
    }

    /// Deletes `key` (`true` even if it was absent). With `cas: Some(n)`, `n > 0`, deletes only
    /// if its ModifyIndex is `n` and returns `false` otherwise.
    pub async fn kv_delete(&self, key: &str, cas: Option<u64>) -> Result<bool, DiscoveryError> {
        let q: Query<'_> = cas
            .map(|c| ("cas", Some(c.to_string())))
            .into_iter()
            .collect();
        let resp = self
            .write(Method::DELETE, &kv_path(key), q, Bytes::new())
            .await?
            .success()?;
        resp.json()
    }

    /// Deletes every key under `prefix` (`?recurse`).
    pub async fn kv_delete_tree(&self, prefix: &str) -> Result<bool, DiscoveryError> {
        let resp = self
            .write(
                Method::DELETE,
                &kv_path(prefix),
                vec![("recurse", None)],
                Bytes::new(),
            )
            .await?
            .success()?;
        resp.json()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn decodes_base64_and_null() {
        let raw: Vec<RawPair> = serde_json::from_str(
            r#"[{"Key":"a","Value":"eyJhIjo5MH0=","Flags":0,"CreateIndex":100,"ModifyIndex":200,"LockIndex":0},
                {"Key":"b","Value":null,"Flags":3,"CreateIndex":1,"ModifyIndex":2,"LockIndex":0}]"#,
        )
        .unwrap();
        let pairs: Vec<KvPair> = raw.into_iter().map(|r| r.decode().unwrap()).collect();
        assert_eq!(pairs[0].value, br#"{"a":90}"#);
        assert_eq!(pairs[0].modify_index, 200);
        assert!(pairs[1].value.is_empty());
        assert_eq!(pairs[1].flags, 3);
    }

    #[test]
    fn bad_base64_is_an_error() {
        let raw: RawPair = serde_json::from_str(r#"{"Key":"a","Value":"***"}"#).unwrap();
        assert!(matches!(raw.decode(), Err(DiscoveryError::Base64 { .. })));
    }
}
