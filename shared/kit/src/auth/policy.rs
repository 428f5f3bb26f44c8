//! The declarative authorisation table: for each RPC, who may call it and how scope is checked.
//!
//! A service lists one [`RpcPolicy`] per method. The middleware refuses callers whose role is not
//! listed; the [`ScopeCheck`] documents (and the handler enforces) which part of the request must
//! fall inside the caller's property scope. A method with no entry is refused, so a new RPC cannot
//! be exposed by accident.

use super::Role;

/// How a handler checks scope for this RPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeCheck {
    /// The request names a property; it must be in the caller's property scope.
    Property,
    /// The request names resources of one chain; the caller's chain must match.
    Chain,
    /// Guests reach only their own records; staff as for `Property`.
    OwnGuestOrProperty,
    /// Nothing in the request is scoped (e.g. the caller asks about itself).
    Caller,
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub struct RpcPolicy {
    /// Full gRPC path, e.g. `/guestloop.complaints.v1.ComplaintsService/CreateComplaint`.
    pub method: &'static str,
    pub roles: &'static [Role],
    pub scope: ScopeCheck,
}

/// Paths that need no token: health checks and reflection.
pub fn is_public(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/")
        || path.starts_with("/grpc.reflection.v1.ServerReflection/")
        || path.starts_with("/grpc.reflection.v1alpha.ServerReflection/")
}

const EVERYONE: &[Role] = &Role::ALL;
const FEED_READERS: &[Role] = &[Role::Service, Role::ChainAdmin, Role::ChainQualityManager];

/// Rows every service has: the diagnostics and event-feed services mounted by the kit.
pub const KIT_POLICIES: &[RpcPolicy] = &[
    RpcPolicy {
        method: "/guestloop.common.v1.Diagnostics/WhoAmI",
        roles: EVERYONE,
        scope: ScopeCheck::Caller,
    },
    RpcPolicy {
        method: "/guestloop.common.v1.EventFeed/SubscribeEvents",
        roles: FEED_READERS,
        scope: ScopeCheck::Chain,
    },
    RpcPolicy {
        method: "/guestloop.common.v1.EventFeed/ListEvents",
        roles: FEED_READERS,
        scope: ScopeCheck::Chain,
    },
    RpcPolicy {
        method: "/guestloop.common.v1.EventFeed/GetFeedStatus",
        roles: FEED_READERS,
        scope: ScopeCheck::Chain,
    },
];

/// A service's table plus the kit's rows.
#[derive(Debug, Clone, Copy)]
pub struct PolicyTable {
    pub service_rows: &'static [RpcPolicy],
}

/// Outcome of looking a request up in the table.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Allowed(ScopeCheck),
    /// The role may not call this method.
    RoleRefused,
    /// No row: the method is not exposed.
    UnknownMethod,
}

impl PolicyTable {
    pub const fn new(service_rows: &'static [RpcPolicy]) -> Self {
        Self { service_rows }
    }

    pub fn find(&self, path: &str) -> Option<&RpcPolicy> {
        self.service_rows
            .iter()
            .chain(KIT_POLICIES.iter())
            .find(|row| row.method == path)
    }

    pub fn decide(&self, path: &str, role: Role) -> Decision {
        match self.find(path) {
            None => Decision::UnknownMethod,
            Some(row) if row.roles.contains(&role) => Decision::Allowed(row.scope),
            Some(_) => Decision::RoleRefused,
        }
    }

    /// Every method path the table covers (for the coverage test against the contracts).
    pub fn methods(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.service_rows
            .iter()
            .chain(KIT_POLICIES.iter())
            .map(|row| row.method)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROWS: &[RpcPolicy] = &[RpcPolicy {
        method: "/x.v1.S/Do",
        roles: &[Role::Agent],
        scope: ScopeCheck::Property,
    }];

    #[test]
    fn table_decides_by_role_and_refuses_unknown_methods() {
        let table = PolicyTable::new(ROWS);
        assert_eq!(
            table.decide("/x.v1.S/Do", Role::Agent),
            Decision::Allowed(ScopeCheck::Property)
        );
        assert_eq!(
            table.decide("/x.v1.S/Do", Role::Guest),
            Decision::RoleRefused
        );
        assert_eq!(
            table.decide("/x.v1.S/Other", Role::Agent),
            Decision::UnknownMethod
        );
        assert_eq!(
            table.decide("/guestloop.common.v1.Diagnostics/WhoAmI", Role::Guest),
            Decision::Allowed(ScopeCheck::Caller)
        );
    }

    #[test]
    fn health_and_reflection_are_public() {
        assert!(is_public("/grpc.health.v1.Health/Check"));
        assert!(is_public(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
        ));
        assert!(!is_public("/guestloop.common.v1.Diagnostics/WhoAmI"));
    }
}
