//! Preference groups: each chain names the groups its guests' likes and dislikes fall into, and
//! how many likes a guest may hold in each (dislikes, allergies and taboos are never limited, so
//! staff can always record "never do X").

/// One group and its limit of likes per guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreferenceGroup {
    pub name: String,
    pub likes_limit: i64,
}

/// The most groups a chain defines.
pub const MAX_GROUPS: usize = 30;
/// The most likes one group may allow per guest.
pub const MAX_LIKES: i64 = 100;
const MAX_NAME: usize = 40;

/// The groups of a chain that has defined none.
pub fn defaults() -> Vec<PreferenceGroup> {
    [
        ("room", 10),
        ("floor", 3),
        ("pillow", 3),
        ("diet", 10),
        ("amenities", 15),
        ("communication", 5),
    ]
    .into_iter()
    .map(|(name, likes_limit)| PreferenceGroup {
        name: name.to_string(),
        likes_limit,
    })
    .collect()
}

/// A group name as stored and compared: trimmed and lower-cased.
pub fn normalise(name: &str) -> String {
    name.trim().to_lowercase()
}

/// Field-by-field faults of a chain's groups, `groups.groups[i].…` as the request names them:
/// (field, why). Empty when they may be stored.
pub fn faults(groups: &[PreferenceGroup]) -> Vec<(String, String)> {
    let mut faults = Vec::new();
    if groups.is_empty() || groups.len() > MAX_GROUPS {
        faults.push((
            "groups.groups".to_string(),
            format!("define between 1 and {MAX_GROUPS} groups"),
        ));
    }
    let mut seen: Vec<&str> = Vec::new();
    for (i, group) in groups.iter().enumerate() {
        let field = |name: &str| format!("groups.groups[{i}].{name}");
        let name = group.name.as_str();
        let shaped = !name.is_empty()
            && name.chars().count() <= MAX_NAME
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !shaped {
            faults.push((
                field("name"),
                format!("1–{MAX_NAME} characters: lower-case letters, digits, '-' and '_'"),
            ));
        } else if seen.contains(&name) {
            faults.push((field("name"), format!("`{name}` names two groups")));
        }
        seen.push(name);
        if !(1..=MAX_LIKES).contains(&group.likes_limit) {
            faults.push((
                field("likes_limit"),
                format!("must be between 1 and {MAX_LIKES}"),
            ));
        }
    }
    faults
}

/// Whether a guest holding `likes` likes in `group` may be given one more.
pub fn may_add_like(group: &PreferenceGroup, likes: i64) -> bool {
    likes < group.likes_limit
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn group(name: &str, likes_limit: i64) -> PreferenceGroup {
        PreferenceGroup {
            name: name.to_string(),
            likes_limit,
        }
    }

    #[test]
    fn the_defaults_are_valid_and_name_the_usual_groups() {
        assert!(faults(&defaults()).is_empty());
        let names: Vec<String> = defaults().into_iter().map(|g| g.name).collect();
        assert_eq!(
            names,
            [
                "room",
                "floor",
                "pillow",
                "diet",
                "amenities",
                "communication"
            ]
        );
    }

    #[test]
    fn faults_name_the_field_and_why() {
        let fields: Vec<String> = faults(&[
            group("minibar", 5),
            group("Minibar", 5),
            group("minibar", 0),
            group("", 3),
            group("spa", 101),
        ])
        .into_iter()
        .map(|(f, _)| f)
        .collect();
        assert_eq!(
            fields,
            [
                "groups.groups[1].name",
                "groups.groups[2].name",
                "groups.groups[2].likes_limit",
                "groups.groups[3].name",
                "groups.groups[4].likes_limit",
            ]
        );
        assert_eq!(faults(&[]).len(), 1, "no group at all");
        let many: Vec<PreferenceGroup> = (0..=MAX_GROUPS)
            .map(|i| group(&format!("g{i}"), 1))
            .collect();
        assert_eq!(faults(&many).len(), 1, "too many groups");
    }

    proptest! {
        /// A group takes likes up to its limit and no further.
        #[test]
        fn likes_stop_at_the_limit(limit in 1i64..=MAX_LIKES, held in 0i64..200) {
            let g = group("room", limit);
            prop_assert_eq!(may_add_like(&g, held), held < limit);
        }

        /// Names of the allowed shape, all different, with limits in range, are accepted.
        #[test]
        fn well_formed_groups_pass(names in proptest::collection::btree_set("[a-z0-9_-]{1,40}", 1..=MAX_GROUPS), limit in 1i64..=MAX_LIKES) {
            let groups: Vec<PreferenceGroup> = names.iter().map(|n| group(n, limit)).collect();
            prop_assert!(faults(&groups).is_empty(), "{:?}", faults(&groups));
        }
    }
}
