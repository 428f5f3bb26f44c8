//! Idempotent creates by `request_id` (AIP-155).
//!
//! In the transaction of the effect, [`claim`] inserts the request id, under the caller's chain,
//! with a hash of the caller (chain and subject) and the request. Request ids are unique per chain
//! and method: another chain may use the same one for its own request. A concurrent duplicate blocks on the key until the first
//! commits, then sees the stored response; a later replay gets the stored response; a different
//! request under the same id, or the same request from another caller, is refused: a stored
//! response is only ever handed back to the caller it was made for, so another guest or a
//! colleague outside the first caller's property scope cannot read it by replaying the request.
//! [`record`] stores the response before commit.
//!
//! ```ignore
//! let mut tx = pool.begin().await?;
//! if let Some(previous) = idempotency::claim(&mut tx, &principal, METHOD, &req.request_id, &req).await? {
//!     return Ok(previous);
//! }
//! let created = storage::insert(&mut tx, …).await?;
//! idempotency::record(&mut tx, &principal, METHOD, &req.request_id, &created).await?;
//! tx.commit().await?;
//! ```

use prost::Message;
use sha2::{Digest, Sha256};
use sqlx::PgConnection;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};

const MAX_REQUEST_ID_LEN: usize = 128;

/// Validates a request id; empty means "not idempotent".
pub fn check_request_id(request_id: &str) -> ApiResult<()> {
    if request_id.len() > MAX_REQUEST_ID_LEN {
        return Err(ApiError::invalid(
            "request_id",
            format!("must be at most {MAX_REQUEST_ID_LEN} characters"),
        ));
    }
    if request_id
        .chars()
        .any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(ApiError::invalid(
            "request_id",
            "must not contain spaces or control characters",
        ));
    }
    Ok(())
}

/// The hash a request id is claimed with: the caller's chain and subject, then the request.
fn request_hash<R: Message>(chain: &str, subject: &str, request: &R) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(chain.as_bytes());
    hasher.update([0u8]);
    hasher.update(subject.as_bytes());
    hasher.update([0u8]);
    hasher.update(request.encode_to_vec());
    hasher.finalize().to_vec()
}

/// Claims `request_id` for `method`, or returns the response stored by an earlier identical call
/// of the same caller. With an empty `request_id` the call is not idempotent and this does
/// nothing.
pub async fn claim<R: Message, T: Message + Default>(
    conn: &mut PgConnection,
    caller: &Principal,
    method: &str,
    request_id: &str,
    request: &R,
) -> ApiResult<Option<T>> {
    if request_id.is_empty() {
        return Ok(None);
    }
    check_request_id(request_id)?;
    let chain = caller.chain_id();
    let hash = request_hash(chain, caller.subject(), request);
    // A key claimed before keys were per chain (chain '') still holds its request id for every
    // chain: its retry gets the stored answer, anyone else REQUEST_ID_REUSED, as then.
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (chain_id, method, request_id, request_hash) \
         SELECT $1, $2, $3, $4 WHERE NOT EXISTS ( \
             SELECT 1 FROM idempotency_keys WHERE chain_id = '' AND method = $2 AND request_id = $3) \
         ON CONFLICT DO NOTHING",
    )
    .bind(chain)
    .bind(method)
    .bind(request_id)
    .bind(&hash)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(None);
    }
    let (stored_hash, response): (Vec<u8>, Option<Vec<u8>>) = sqlx::query_as(
        "SELECT request_hash, response FROM idempotency_keys \
         WHERE chain_id IN ($1, '') AND method = $2 AND request_id = $3 \
         ORDER BY chain_id = '' LIMIT 1",
    )
    .bind(chain)
    .bind(method)
    .bind(request_id)
    .fetch_one(&mut *conn)
    .await?;
    if stored_hash != hash {
        return Err(ApiError::failed_precondition(
            "REQUEST_ID_REUSED",
            format!("request_id/{request_id}"),
            "request_id was already used for a different request or by another caller; use a new request_id",
        ));
    }
    let response = response.ok_or_else(|| {
        ApiError::Aborted("the first request with this request_id is still in progress".into())
    })?;
    T::decode(response.as_slice())
        .map(Some)
        .map_err(|e| ApiError::internal(format!("stored response cannot be decoded: {e}")))
}

/// Stores the response of a request `caller` claimed (no-op for an empty `request_id`).
pub async fn record<T: Message>(
    conn: &mut PgConnection,
    caller: &Principal,
    method: &str,
    request_id: &str,
    response: &T,
) -> ApiResult<()> {
    if request_id.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE idempotency_keys SET response = $4 \
         WHERE chain_id = $1 AND method = $2 AND request_id = $3",
    )
    .bind(caller.chain_id())
    .bind(method)
    .bind(request_id)
    .bind(response.encode_to_vec())
    .execute(conn)
    .await?;
    Ok(())
}

/// Rewrites the stored answers of `method` that mention any of `ids` (in their encoded bytes),
/// of `chain_id`'s keys and those from before keys were per chain (every chain's when
/// `chain_id` is empty): each is decoded as `T`, and stored again when `rewrite` changed it.
/// For erasure: an answer kept for retries loses what the record it answered lost, and stays,
/// so a retry still gets its (scrubbed) answer instead of doing the work again. Answers how
/// many were rewritten.
pub async fn rewrite_stored_answers<T: Message + Default>(
    conn: &mut PgConnection,
    chain_id: &str,
    method: &str,
    ids: &[String],
    mut rewrite: impl FnMut(&mut T) -> bool,
) -> ApiResult<u64> {
    let stored: Vec<(String, String, Vec<u8>)> = sqlx::query_as(
        "SELECT k.chain_id, k.request_id, k.response FROM idempotency_keys k \
         WHERE ($1 = '' OR k.chain_id IN ($1, '')) AND k.method = $2 AND k.response IS NOT NULL \
           AND EXISTS (SELECT 1 FROM unnest($3::text[]) AS o(id) \
                       WHERE position(convert_to(o.id, 'UTF8') IN k.response) > 0) \
         ORDER BY k.chain_id, k.request_id FOR UPDATE",
    )
    .bind(chain_id)
    .bind(method)
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut rewritten = 0;
    for (key_chain, request_id, response) in stored {
        let Ok(mut answer) = T::decode(response.as_slice()) else {
            continue;
        };
        if !rewrite(&mut answer) {
            continue;
        }
        sqlx::query(
            "UPDATE idempotency_keys SET response = $4 \
             WHERE chain_id = $1 AND method = $2 AND request_id = $3",
        )
        .bind(&key_chain)
        .bind(method)
        .bind(&request_id)
        .bind(answer.encode_to_vec())
        .execute(&mut *conn)
        .await?;
        rewritten += 1;
    }
    Ok(rewritten)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_checked() {
        assert!(check_request_id("0191c2a4-7e1f-7000-8000-000000000001").is_ok());
        assert!(check_request_id("has space").is_err());
        assert!(check_request_id(&"x".repeat(129)).is_err());
    }

    #[test]
    fn the_same_request_from_another_caller_hashes_differently() {
        let request = prost_types::Timestamp {
            seconds: 1,
            nanos: 2,
        };
        assert_eq!(
            request_hash("a", "u1", &request),
            request_hash("a", "u1", &request)
        );
        assert_ne!(
            request_hash("a", "u1", &request),
            request_hash("b", "u1", &request)
        );
        assert_ne!(
            request_hash("a", "u1", &request),
            request_hash("a", "u2", &request)
        );
        // The separators keep chain, subject and request apart.
        assert_ne!(
            request_hash("a", "u1", &request),
            request_hash("au", "1", &request)
        );
        assert_ne!(
            request_hash(
                "a",
                "",
                &prost_types::Timestamp {
                    seconds: 0,
                    nanos: 0
                }
            ),
            request_hash("", "", &request)
        );
    }
}
