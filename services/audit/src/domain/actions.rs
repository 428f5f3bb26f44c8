//! The corrective action of a finding: open → in progress → done → verified. Done needs an
//! action, an owner and a due date; only a verifier (a quality role) verifies, and only a verifier
//! reopens or edits a verified action. A done action may go back to in progress (the fix did not
//! hold) before it is verified.

/// A corrective action as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action<'a> {
    pub status: &'a str,
    pub action: &'a str,
    pub owner: &'a str,
    pub has_due_date: bool,
}

/// Why a change is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The move is not in the lifecycle (FAILED_PRECONDITION).
    IllegalMove { from: String, to: String },
    /// Done needs these fields, named (INVALID_ARGUMENT).
    Incomplete(Vec<&'static str>),
    /// Only a verifier may do this (PERMISSION_DENIED).
    VerifierOnly(&'static str),
}

fn allowed(from: &str, to: &str) -> bool {
    matches!(
        (from, to),
        ("open", "in_progress" | "done")
            | ("in_progress", "done")
            | ("done", "verified" | "in_progress")
            | ("verified", "in_progress")
    ) || from == to
}

/// Checks the change from `current` to `next` (the stored action with the request applied) by
/// a caller who is (or is not) a verifier.
pub fn check(current: &Action, next: &Action, verifier: bool) -> Result<(), Refusal> {
    if !allowed(current.status, next.status) {
        return Err(Refusal::IllegalMove {
            from: current.status.to_string(),
            to: next.status.to_string(),
        });
    }
    if current.status == "verified" && !verifier {
        return Err(Refusal::VerifierOnly(
            "a verified action is reopened or changed by a verifier only",
        ));
    }
    if next.status == "verified" && current.status != "verified" && !verifier {
        return Err(Refusal::VerifierOnly("only a verifier verifies an action"));
    }
    if matches!(next.status, "done" | "verified") {
        let mut missing = Vec::new();
        if next.action.trim().is_empty() {
            missing.push("action");
        }
        if next.owner.trim().is_empty() {
            missing.push("owner");
        }
        if !next.has_due_date {
            missing.push("due_date");
        }
        if !missing.is_empty() {
            return Err(Refusal::Incomplete(missing));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(status: &str) -> Action<'_> {
        Action {
            status,
            action: "retrain the night shift",
            owner: "fo-manager",
            has_due_date: true,
        }
    }

    #[test]
    fn the_lifecycle_moves_forward_and_back_only_where_it_may() {
        for (from, to) in [
            ("open", "in_progress"),
            ("open", "done"),
            ("in_progress", "done"),
            ("done", "in_progress"),
            ("done", "verified"),
            ("in_progress", "in_progress"),
        ] {
            assert_eq!(
                check(&action(from), &action(to), true),
                Ok(()),
                "{from} → {to}"
            );
        }
        for (from, to) in [
            ("open", "verified"),
            ("in_progress", "verified"),
            ("verified", "done"),
            ("done", "open"),
        ] {
            assert!(
                matches!(
                    check(&action(from), &action(to), true),
                    Err(Refusal::IllegalMove { .. })
                ),
                "{from} → {to}"
            );
        }
    }

    #[test]
    fn only_verifiers_verify_and_touch_verified_actions() {
        assert!(matches!(
            check(&action("done"), &action("verified"), false),
            Err(Refusal::VerifierOnly(_))
        ));
        assert!(matches!(
            check(&action("verified"), &action("in_progress"), false),
            Err(Refusal::VerifierOnly(_))
        ));
        let mut edited = action("verified");
        edited.owner = "someone-else";
        assert!(matches!(
            check(&action("verified"), &edited, false),
            Err(Refusal::VerifierOnly(_))
        ));
        assert_eq!(
            check(&action("verified"), &action("in_progress"), true),
            Ok(())
        );
    }

    #[test]
    fn done_needs_an_action_an_owner_and_a_due_date() {
        let bare = Action {
            status: "done",
            action: " ",
            owner: "",
            has_due_date: false,
        };
        assert_eq!(
            check(&action("open"), &bare, false),
            Err(Refusal::Incomplete(vec!["action", "owner", "due_date"]))
        );
        let in_progress = Action {
            status: "in_progress",
            ..bare
        };
        assert_eq!(check(&action("open"), &in_progress, false), Ok(()));
    }
}
