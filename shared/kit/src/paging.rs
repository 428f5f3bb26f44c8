//! AIP-158 paging for List RPCs: page sizes with a default and a ceiling, and opaque page tokens
//! that carry a keyset cursor (the sort key of the last row served), so a page never skips or
//! repeats rows when others are inserted meanwhile.

use base64::Engine;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{ApiError, ApiResult};

/// The page size to use: `default` for 0, the value itself up to `max`, INVALID_ARGUMENT beyond.
pub fn page_size(requested: i32, default: i64, max: i64) -> ApiResult<i64> {
    match i64::from(requested) {
        0 => Ok(default),
        n if (1..=max).contains(&n) => Ok(n),
        _ => Err(ApiError::invalid(
            "page_size",
            format!("must be between 1 and {max}"),
        )),
    }
}

/// An opaque token for the cursor (URL-safe base64 of its JSON).
pub fn encode_token<C: Serialize>(cursor: &C) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(cursor).unwrap_or_default())
}

/// The cursor a token carries; `None` for the empty token (first page).
pub fn decode_token<C: DeserializeOwned>(token: &str) -> ApiResult<Option<C>> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || ApiError::invalid("page_token", "is not a token this service issued");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| invalid())?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|_| invalid())
}

/// Splits `rows` fetched with `LIMIT size + 1` into the page and the next token.
pub fn split_page<R, C: Serialize>(
    mut rows: Vec<R>,
    size: i64,
    cursor: impl Fn(&R) -> C,
) -> (Vec<R>, String) {
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    if rows.len() > size {
        rows.truncate(size);
        let token = rows.last().map(|r| encode_token(&cursor(r)));
        (rows, token.unwrap_or_default())
    } else {
        (rows, String::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Cursor {
        room: String,
        id: u32,
    }

    #[test]
    fn sizes_default_and_refuse_out_of_range() {
        assert_eq!(page_size(0, 100, 500).ok(), Some(100));
        assert_eq!(page_size(500, 100, 500).ok(), Some(500));
        assert!(page_size(501, 100, 500).is_err());
        assert!(page_size(-1, 100, 500).is_err());
    }

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        let c = Cursor {
            room: "101".into(),
            id: 7,
        };
        let token = encode_token(&c);
        assert_eq!(decode_token::<Cursor>(&token).ok().flatten(), Some(c));
        assert!(decode_token::<Cursor>("").ok().flatten().is_none());
        assert!(decode_token::<Cursor>("not base64!").is_err());
        assert!(decode_token::<Cursor>(&encode_token(&42)).is_err());
    }

    #[test]
    fn split_gives_a_token_only_when_more_rows_exist() {
        let (page, token) = split_page(vec![1, 2, 3], 2, |n| *n);
        assert_eq!(page, vec![1, 2]);
        assert_eq!(decode_token::<i32>(&token).ok().flatten(), Some(2));
        let (page, token) = split_page(vec![1, 2], 2, |n| *n);
        assert_eq!(page, vec![1, 2]);
        assert!(token.is_empty());
    }
}
