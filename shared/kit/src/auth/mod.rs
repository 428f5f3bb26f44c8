//! Bearer-token authentication and the per-service authorisation policy.
//!
//! Every RPC except health and reflection carries `authorization: Bearer <JWT>`. Tokens are HS256
//! with a shared secret (local use) or RS256/EdDSA verified with configured public keys
//! (production). `alg=none` and unknown algorithms are refused. The claims say who is calling
//! (subject, role), for which chain, and which properties they may touch; guest tokens also carry
//! the guest id. The [`policy`] table of each service decides which roles may call which RPC;
//! handlers check property scope against the request with [`Principal::require_property`].

pub mod policy;
mod tokens;

use serde::{Deserialize, Serialize};

use crate::error::ApiError;

pub use tokens::{TokenIssuer, TokenVerifier};

/// What a caller is, as carried in the `role` claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Guest,
    Agent,
    Supervisor,
    DutyManager,
    DepartmentHead,
    GeneralManager,
    ChainQualityManager,
    ChainAdmin,
    /// Another Guestloop service calling with a service token.
    Service,
}

impl Role {
    pub const ALL: [Role; 9] = [
        Role::Guest,
        Role::Agent,
        Role::Supervisor,
        Role::DutyManager,
        Role::DepartmentHead,
        Role::GeneralManager,
        Role::ChainQualityManager,
        Role::ChainAdmin,
        Role::Service,
    ];

    /// Staff of a property or of the chain (everyone but guests and services).
    pub const STAFF: [Role; 7] = [
        Role::Agent,
        Role::Supervisor,
        Role::DutyManager,
        Role::DepartmentHead,
        Role::GeneralManager,
        Role::ChainQualityManager,
        Role::ChainAdmin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Guest => "guest",
            Role::Agent => "agent",
            Role::Supervisor => "supervisor",
            Role::DutyManager => "duty_manager",
            Role::DepartmentHead => "department_head",
            Role::GeneralManager => "general_manager",
            Role::ChainQualityManager => "chain_quality_manager",
            Role::ChainAdmin => "chain_admin",
            Role::Service => "service",
        }
    }

    pub fn is_staff(self) -> bool {
        Self::STAFF.contains(&self)
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
                format!(
                    "unknown role `{text}`; expected one of {}",
                    names.join(", ")
                )
            })
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which properties a token may touch: a list, or every property of its chain (`"*"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PropertyScope {
    All(AllProperties),
    Listed(Vec<String>),
}

/// The `"*"` marker of [`PropertyScope::All`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AllProperties {
    #[serde(rename = "*")]
    All,
}

impl PropertyScope {
    pub fn all() -> Self {
        PropertyScope::All(AllProperties::All)
    }

    pub fn contains(&self, property_id: &str) -> bool {
        match self {
            PropertyScope::All(_) => true,
            PropertyScope::Listed(ids) => ids.iter().any(|id| id == property_id),
        }
    }
}

/// The JWT claims Guestloop reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: Role,
    /// Chain id the token belongs to.
    pub chain: String,
    /// Property scope.
    pub props: PropertyScope,
    /// Set on guest tokens: the chain-wide guest id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_id: Option<String>,
    /// Optional department of a staff member (e.g. `housekeeping`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
}

impl Claims {
    /// Claims for `sub` acting as `role` in `chain` over `props`, with no guest or department;
    /// issuer, audience and times are filled in when a token is minted.
    pub fn new(
        sub: impl Into<String>,
        role: Role,
        chain: impl Into<String>,
        props: PropertyScope,
    ) -> Self {
        Self {
            sub: sub.into(),
            role,
            chain: chain.into(),
            props,
            guest_id: None,
            department: None,
            iss: String::new(),
            aud: String::new(),
            iat: 0,
            exp: 0,
        }
    }
}

/// The authenticated caller of one request, placed in the request extensions by the middleware.
#[derive(Debug, Clone)]
pub struct Principal {
    pub claims: Claims,
}

impl Principal {
    pub fn role(&self) -> Role {
        self.claims.role
    }

    pub fn subject(&self) -> &str {
        &self.claims.sub
    }

    /// Who a record names as having acted: staff and services by their subject; a guest acting
    /// for themselves as `guest` (their login identifies the person, and the record is theirs
    /// anyway, by its guest id, which erasure removes).
    pub fn actor(&self) -> &str {
        if self.claims.role == Role::Guest {
            "guest"
        } else {
            &self.claims.sub
        }
    }

    pub fn chain_id(&self) -> &str {
        &self.claims.chain
    }

    pub fn guest_id(&self) -> Option<&str> {
        self.claims.guest_id.as_deref()
    }

    pub fn can_access_property(&self, property_id: &str) -> bool {
        self.claims.props.contains(property_id)
    }

    /// PERMISSION_DENIED unless the caller's scope includes `property_id`.
    pub fn require_property(&self, property_id: &str) -> Result<(), ApiError> {
        if self.can_access_property(property_id) {
            Ok(())
        } else {
            Err(ApiError::PermissionDenied(format!(
                "property {property_id} is outside the caller's scope"
            )))
        }
    }

    /// Whether the caller's scope is every property of their chain (`"*"`).
    pub fn covers_whole_chain(&self) -> bool {
        matches!(self.claims.props, PropertyScope::All(_))
    }

    /// PERMISSION_DENIED unless the caller's scope is every property of their chain: `what`
    /// applies at all of them, so a token limited to some may not change it.
    pub fn require_whole_chain(&self, what: &str) -> Result<(), ApiError> {
        if self.covers_whole_chain() {
            Ok(())
        } else {
            Err(ApiError::PermissionDenied(format!(
                "{what} applies at every property of the chain; only a token scoped to all of them (\"*\") may change it"
            )))
        }
    }

    /// PERMISSION_DENIED unless the caller may act at every one of `users`: the properties where
    /// `what` (a checklist, a template) is in use, so a change to it applies at all of them.
    pub fn require_every_user(&self, users: &[String], what: &str) -> Result<(), ApiError> {
        match users.iter().find(|p| !self.can_access_property(p)) {
            None => Ok(()),
            Some(property) => Err(ApiError::PermissionDenied(format!(
                "{what} is in use at property {property}, outside the caller's scope; only a \
                 token covering every property that uses it may revise it"
            ))),
        }
    }

    /// PERMISSION_DENIED unless the caller belongs to `chain_id`.
    pub fn require_chain(&self, chain_id: &str) -> Result<(), ApiError> {
        if self.claims.chain == chain_id {
            Ok(())
        } else {
            Err(ApiError::PermissionDenied(format!(
                "chain {chain_id} is outside the caller's scope"
            )))
        }
    }

    /// PERMISSION_DENIED unless the caller has one of `roles`.
    pub fn require_role(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.claims.role) {
            Ok(())
        } else {
            Err(ApiError::PermissionDenied(format!(
                "role {} may not do this",
                self.claims.role
            )))
        }
    }
}

/// The caller's raw bearer token (for a gateway that calls backends on the caller's behalf, so
/// the backends enforce the caller's own scope).
#[derive(Debug, Clone)]
pub struct BearerToken(pub String);

/// The principal of a request, as placed there by the kit's middleware.
pub fn principal<T>(request: &tonic::Request<T>) -> Result<&Principal, ApiError> {
    request
        .extensions()
        .get::<Principal>()
        .ok_or_else(|| ApiError::Unauthenticated("missing bearer token".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_round_trip() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("janitor".parse::<Role>().is_err());
    }

    #[test]
    fn scope_serialises_as_star_or_list() {
        let all = serde_json::to_string(&PropertyScope::all()).expect("serialise");
        assert_eq!(all, "\"*\"");
        let listed: PropertyScope = serde_json::from_str("[\"p1\",\"p2\"]").expect("parse");
        assert!(listed.contains("p2"));
        assert!(!listed.contains("p3"));
    }

    fn caller(props: PropertyScope) -> Principal {
        Principal {
            claims: Claims::new("u1", Role::GeneralManager, "c1", props),
        }
    }

    #[test]
    fn a_shared_object_is_revised_only_by_a_caller_at_every_property_using_it() {
        let users = vec!["lisbon".to_string(), "vienna".to_string()];
        let vienna = caller(PropertyScope::Listed(vec!["vienna".into()]));
        match vienna.require_every_user(&users, "checklist 7") {
            Err(ApiError::PermissionDenied(message)) => {
                assert!(message.contains("checklist 7"), "{message}");
                assert!(message.contains("property lisbon"), "{message}");
            }
            other => panic!("expected PERMISSION_DENIED, got {other:?}"),
        }
        assert!(vienna
            .require_every_user(&users[1..], "checklist 7")
            .is_ok());
        assert!(vienna.require_every_user(&[], "checklist 7").is_ok());
        let both = caller(PropertyScope::Listed(users.clone()));
        assert!(both.require_every_user(&users, "checklist 7").is_ok());
        assert!(caller(PropertyScope::all())
            .require_every_user(&users, "checklist 7")
            .is_ok());
    }
}
