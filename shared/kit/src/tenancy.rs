//! Which chain a property belongs to, and the checks that keep one chain's callers out of
//! another chain's properties.
//!
//! A token names its chain and its properties, or every property of its chain (`"*"`). The
//! scope check alone ([`Principal::require_property`]) cannot tell whose property an id is, so
//! each service keeps a `property_chains` table (a kit migration): the first write that names a
//! property registers it under the writer's chain ([`claim_property`]), and every later read or
//! write by a caller of another chain is refused ([`require_property`], [`can_access`]). Lists
//! leave out rows of properties registered to another chain ([`foreign_property_filter`]).
//! Services act for every chain and pass every check.

use sqlx::PgConnection;

use crate::auth::{Principal, Role};
use crate::{ApiError, ApiResult};

/// The chain whose properties the caller may reach, or `None` for services (every chain).
pub fn caller_chain(principal: &Principal) -> Option<&str> {
    (principal.role() != Role::Service).then(|| principal.chain_id())
}

/// The first of `properties` registered under another chain than `chain_id`, if any.
async fn foreign(
    conn: &mut PgConnection,
    chain_id: &str,
    properties: &[&str],
) -> ApiResult<Option<String>> {
    if properties.is_empty() {
        return Ok(None);
    }
    Ok(sqlx::query_scalar(
        "SELECT property_id FROM property_chains WHERE property_id = ANY($1) AND chain_id <> $2 \
         ORDER BY property_id LIMIT 1",
    )
    .bind(properties)
    .bind(chain_id)
    .fetch_optional(&mut *conn)
    .await?)
}

/// The scope check for every one of `properties`, then [`caller_chain`].
fn scoped_chain<'a>(principal: &'a Principal, properties: &[&str]) -> ApiResult<Option<&'a str>> {
    for property in properties {
        principal.require_property(property)?;
    }
    Ok(caller_chain(principal))
}

fn another_chains(property: &str) -> ApiError {
    ApiError::PermissionDenied(format!("property {property} belongs to another chain"))
}

/// PERMISSION_DENIED unless every one of `properties` is in the caller's scope and none is
/// registered under another chain. For reads and changes of existing records.
pub async fn require_properties(
    conn: &mut PgConnection,
    principal: &Principal,
    properties: &[&str],
) -> ApiResult<()> {
    match scoped_chain(principal, properties)? {
        Some(chain) => require_of_chain(conn, chain, properties).await,
        None => Ok(()),
    }
}

/// PERMISSION_DENIED if one of `properties` is registered under another chain than `chain_id`.
/// For a service asking on a chain's behalf (its own token passes every check).
pub async fn require_of_chain(
    conn: &mut PgConnection,
    chain_id: &str,
    properties: &[&str],
) -> ApiResult<()> {
    match foreign(conn, chain_id, properties).await? {
        Some(property) => Err(another_chains(&property)),
        None => Ok(()),
    }
}

/// [`require_properties`], and for a service that says it asks on a chain's behalf
/// (`on_behalf_of_chain`, non-empty), [`require_of_chain`] for that chain: a service's own token
/// passes every chain check, so the chain it serves is checked instead.
pub async fn require_properties_on_behalf(
    conn: &mut PgConnection,
    principal: &Principal,
    on_behalf_of_chain: &str,
    properties: &[&str],
) -> ApiResult<()> {
    require_properties(conn, principal, properties).await?;
    if caller_chain(principal).is_none() && !on_behalf_of_chain.is_empty() {
        require_of_chain(conn, on_behalf_of_chain, properties).await?;
    }
    Ok(())
}

/// [`require_properties`] for one property.
pub async fn require_property(
    conn: &mut PgConnection,
    principal: &Principal,
    property: &str,
) -> ApiResult<()> {
    require_properties(conn, principal, &[property]).await
}

/// Whether the caller may see a record of `property`: in scope and not another chain's. For
/// records loaded by id, which answer NOT_FOUND rather than reveal that they exist.
pub async fn can_access(
    conn: &mut PgConnection,
    principal: &Principal,
    property: &str,
) -> ApiResult<bool> {
    if !principal.can_access_property(property) {
        return Ok(false);
    }
    match caller_chain(principal) {
        Some(chain) => Ok(foreign(conn, chain, &[property]).await?.is_none()),
        None => Ok(true),
    }
}

/// The chain each of `properties` is registered under (those no chain holds are absent).
pub async fn chains_of(
    conn: &mut PgConnection,
    properties: &[&str],
) -> ApiResult<std::collections::HashMap<String, String>> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT property_id, chain_id FROM property_chains WHERE property_id = ANY($1)",
    )
    .bind(properties)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().collect())
}

/// The chain a call about `properties` acts for: the caller's own, or for a service (which
/// acts for every chain) the one chain those properties are registered under. A service that
/// names no property, or properties no chain holds or that belong to several chains, is
/// refused (INVALID_ARGUMENT on `field`), rather than answered for no chain at all.
pub async fn acting_chain(
    conn: &mut PgConnection,
    principal: &Principal,
    field: &str,
    properties: &[&str],
) -> ApiResult<String> {
    if let Some(chain) = caller_chain(principal) {
        return Ok(chain.to_string());
    }
    let chains: Vec<(String, i64)> = sqlx::query_as(
        "SELECT chain_id, count(*) FROM property_chains WHERE property_id = ANY($1) GROUP BY chain_id",
    )
    .bind(properties)
    .fetch_all(&mut *conn)
    .await?;
    let mut named: Vec<&str> = properties.to_vec();
    named.sort_unstable();
    named.dedup();
    match chains.as_slice() {
        [(chain, count)] if usize::try_from(*count).ok() == Some(named.len()) => Ok(chain.clone()),
        _ => Err(ApiError::invalid(
            field,
            "a service names properties that one chain holds, and acts for that chain",
        )),
    }
}

/// Registers `properties` under `chain_id` where no chain holds them yet, then refuses
/// (PERMISSION_DENIED) if one of them is another chain's. Run it in the transaction that writes
/// the records, so the registration commits with them.
pub async fn claim_for_chain(
    conn: &mut PgConnection,
    chain_id: &str,
    properties: &[&str],
) -> ApiResult<()> {
    if properties.is_empty() {
        return Ok(());
    }
    // A record always names its property; '' is no property to register. Handlers name the
    // field themselves before they get here; this keeps any that does not from writing.
    if properties.iter().any(|p| p.is_empty()) {
        return Err(ApiError::invalid("property_id", "is required"));
    }
    let mut sorted: Vec<&str> = properties.to_vec();
    // One order, so concurrent claims of overlapping sets cannot deadlock.
    sorted.sort_unstable();
    sorted.dedup();
    sqlx::query(
        "INSERT INTO property_chains (property_id, chain_id) SELECT p, $2 FROM unnest($1::text[]) AS p \
         ORDER BY p ON CONFLICT (property_id) DO NOTHING",
    )
    .bind(&sorted)
    .bind(chain_id)
    .execute(&mut *conn)
    .await?;
    match foreign(conn, chain_id, &sorted).await? {
        Some(property) => Err(another_chains(&property)),
        None => Ok(()),
    }
}

/// The scope check, then [`claim_for_chain`] under the caller's chain. For creates: the first
/// record of a property registers it. Services write for the chain their input names and call
/// [`claim_for_chain`] themselves.
pub async fn claim_properties(
    conn: &mut PgConnection,
    principal: &Principal,
    properties: &[&str],
) -> ApiResult<()> {
    match scoped_chain(principal, properties)? {
        Some(chain) => claim_for_chain(conn, chain, properties).await,
        None => Ok(()),
    }
}

/// [`claim_properties`] for one property.
pub async fn claim_property(
    conn: &mut PgConnection,
    principal: &Principal,
    property: &str,
) -> ApiResult<()> {
    claim_properties(conn, principal, &[property]).await
}

/// Registers the properties the operator assigns to chains (`chains` in the settings: chain id
/// → property ids), moving any of them that another chain's write registered first. Run at
/// start-up, after the migrations.
pub async fn assign(
    pool: &sqlx::PgPool,
    chains: &std::collections::BTreeMap<String, Vec<String>>,
) -> anyhow::Result<()> {
    let (properties, owners): (Vec<&str>, Vec<&str>) = chains
        .iter()
        .flat_map(|(chain, properties)| {
            properties.iter().map(move |p| (p.as_str(), chain.as_str()))
        })
        .unzip();
    if properties.is_empty() {
        return Ok(());
    }
    let moved: Vec<(String, String, String)> = sqlx::query_as(
        "WITH before AS (SELECT property_id, chain_id FROM property_chains WHERE property_id = ANY($1)) \
         INSERT INTO property_chains (property_id, chain_id) \
         SELECT p, c FROM unnest($1::text[], $2::text[]) AS u(p, c) ORDER BY p \
         ON CONFLICT (property_id) DO UPDATE SET chain_id = EXCLUDED.chain_id, registered_at = now() \
         WHERE property_chains.chain_id <> EXCLUDED.chain_id \
         RETURNING property_id, chain_id, \
             coalesce((SELECT b.chain_id FROM before b WHERE b.property_id = property_chains.property_id), '')",
    )
    .bind(&properties)
    .bind(&owners)
    .fetch_all(pool)
    .await?;
    for (property, chain, previous) in moved.iter().filter(|(_, _, previous)| !previous.is_empty())
    {
        tracing::warn!(%property, %chain, %previous, "property moved to the chain the settings assign it to");
    }
    Ok(())
}

/// An SQL condition that leaves out rows whose `column` names a property registered under
/// another chain than bind parameter `$param` (a nullable text: NULL keeps every row, for
/// services). Bind [`caller_chain`] to it.
pub fn foreign_property_filter(column: &str, param: usize) -> String {
    format!(
        "(${param}::text IS NULL OR NOT EXISTS (SELECT 1 FROM property_chains pc \
         WHERE pc.property_id = {column} AND pc.chain_id <> ${param}::text))"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_names_the_column_and_parameter() {
        let sql = foreign_property_filter("w.property_id", 3);
        assert!(sql.contains("pc.property_id = w.property_id"));
        assert!(sql.contains("$3::text IS NULL"));
        assert!(sql.contains("pc.chain_id <> $3::text"));
    }
}
