//! Preference groups: each chain names the groups its guests' likes and dislikes fall into, and
//! how many likes a guest may hold in each (dislikes, allergies and taboos are never limited, so
//! staff can always record "never do X").
//!
//! An entry is the same as another when group, value and polarity are: group names are
//! [`normalise`]d, values trimmed (their case is the guest's wording and kept).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

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

/// One entry a guest holds, as a merge weighs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldEntry<Id> {
    pub id: Id,
    pub group: String,
    pub value: String,
    /// As stored: like, dislike, allergy or taboo.
    pub polarity: i16,
    /// Only likes count against a group's limit.
    pub like: bool,
    pub recorded_at: DateTime<Utc>,
}

impl<Id> HeldEntry<Id> {
    fn key(&self) -> (&str, &str, i16) {
        (&self.group, &self.value, self.polarity)
    }
}

/// The ids of the entries the survivor of a merge holds afterwards, chosen from its own and the
/// duplicate's; the others are dropped.
///
/// - Entries the same on group, value and polarity are kept once: the earliest recorded, so who
///   first recorded it, and when, stays (which may be the duplicate's).
/// - Every dislike, allergy and taboo is kept: they are never refused for a full group.
/// - In each group the survivor's own likes all stay (even beyond a limit the chain lowered
///   since), then the duplicate's most recently recorded likes fill what is left of the limit.
///   A group the chain no longer defines takes none of the duplicate's likes, as AddPreference
///   would refuse them.
pub fn merged_entries<Id: Clone + Ord>(
    groups: &[PreferenceGroup],
    survivor: &[HeldEntry<Id>],
    duplicate: &[HeldEntry<Id>],
) -> Vec<Id> {
    let mut earliest: BTreeMap<(&str, &str, i16), &HeldEntry<Id>> = BTreeMap::new();
    for entry in survivor.iter().chain(duplicate) {
        earliest
            .entry(entry.key())
            .and_modify(|kept| {
                if (entry.recorded_at, &entry.id) < (kept.recorded_at, &kept.id) {
                    *kept = entry;
                }
            })
            .or_insert(entry);
    }
    let own: BTreeSet<(&str, &str, i16)> = survivor.iter().map(HeldEntry::key).collect();
    let mut kept = Vec::new();
    let mut likes_held: BTreeMap<&str, i64> = BTreeMap::new();
    let mut offered = Vec::new();
    for (key, entry) in &earliest {
        if !entry.like {
            kept.push(entry.id.clone());
        } else if own.contains(key) {
            kept.push(entry.id.clone());
            *likes_held.entry(&entry.group).or_default() += 1;
        } else {
            offered.push(*entry);
        }
    }
    // The duplicate's likes, most recently recorded first.
    offered.sort_by(|a, b| (b.recorded_at, &b.id).cmp(&(a.recorded_at, &a.id)));
    for entry in offered {
        let Some(group) = groups.iter().find(|g| g.name == entry.group) else {
            continue;
        };
        let held = likes_held.entry(&entry.group).or_default();
        if may_add_like(group, *held) {
            kept.push(entry.id.clone());
            *held += 1;
        }
    }
    kept.sort();
    kept
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

    const LIKE: i16 = 1;
    const DISLIKE: i16 = 2;
    const ALLERGY: i16 = 3;

    /// An entry recorded `day` days into 2026.
    fn entry(id: u32, group: &str, value: &str, polarity: i16, day: i64) -> HeldEntry<u32> {
        HeldEntry {
            id,
            group: group.to_string(),
            value: value.to_string(),
            polarity,
            like: polarity == LIKE,
            recorded_at: DateTime::from_timestamp(1_767_225_600 + day * 86_400, 0)
                .expect("a time in range"),
        }
    }

    #[test]
    fn a_merge_keeps_the_survivors_likes_before_the_duplicates() {
        // pillow takes 3 likes: the survivor holds 3, so none of the duplicate's move.
        let survivor = [
            entry(1, "pillow", "buckwheat", LIKE, 10),
            entry(2, "pillow", "feather", LIKE, 11),
            entry(3, "pillow", "memory foam", LIKE, 12),
        ];
        let duplicate = [
            entry(11, "pillow", "latex", LIKE, 20),
            entry(12, "pillow", "down", LIKE, 21),
            entry(13, "pillow", "buckwheat", LIKE, 22),
        ];
        assert_eq!(
            merged_entries(&defaults(), &survivor, &duplicate),
            [1, 2, 3]
        );
    }

    #[test]
    fn a_merge_fills_a_group_with_the_duplicates_latest_likes() {
        let survivor = [entry(1, "pillow", "feather", LIKE, 30)];
        let duplicate = [
            entry(11, "pillow", "latex", LIKE, 5),
            entry(12, "pillow", "down", LIKE, 40),
            entry(13, "pillow", "buckwheat", LIKE, 20),
            entry(14, "floor", "high", LIKE, 1),
        ];
        assert_eq!(
            merged_entries(&defaults(), &survivor, &duplicate),
            [1, 12, 13, 14],
            "down and buckwheat are the latest two; latex is one too many"
        );
    }

    #[test]
    fn a_merge_keeps_the_earliest_of_the_same_entry_and_every_dislike() {
        let survivor = [
            entry(1, "pillow", "feather", LIKE, 30),
            entry(2, "diet", "nuts", ALLERGY, 30),
            entry(3, "pillow", "feather", LIKE, 31),
        ];
        let duplicate = [
            entry(11, "pillow", "feather", LIKE, 2),
            entry(12, "diet", "nuts", ALLERGY, 40),
            entry(13, "diet", "nuts", DISLIKE, 41),
            entry(14, "pillow", "high", DISLIKE, 42),
            entry(15, "pillow", "Feather", LIKE, 43),
        ];
        assert_eq!(
            merged_entries(&defaults(), &survivor, &duplicate),
            [2, 11, 13, 14, 15],
            "the duplicate's feather was recorded first; a dislike is not the allergy; values keep their case"
        );
    }

    #[test]
    fn a_full_group_still_takes_the_duplicates_dislikes_and_keeps_the_survivors_likes() {
        let groups = [group("pillow", 1)];
        let survivor = [
            entry(1, "pillow", "feather", LIKE, 1),
            entry(2, "pillow", "down", LIKE, 2),
        ];
        let duplicate = [
            entry(11, "pillow", "latex", LIKE, 3),
            entry(12, "pillow", "very high", DISLIKE, 4),
            entry(13, "minibar", "cola", LIKE, 5),
            entry(14, "minibar", "peanuts", ALLERGY, 6),
        ];
        assert_eq!(
            merged_entries(&groups, &survivor, &duplicate),
            [1, 2, 12, 14],
            "a limit lowered since does not drop the survivor's likes; a group no longer defined takes no likes"
        );
    }

    fn held(ids: std::ops::Range<u32>) -> impl Strategy<Value = Vec<HeldEntry<u32>>> {
        let group = prop_oneof![Just("pillow"), Just("floor"), Just("spa")];
        let value = prop_oneof![Just("a"), Just("b"), Just("c"), Just("d"), Just("e")];
        proptest::collection::vec((group, value, 1i16..=4, 0i64..50), 0..12).prop_map(
            move |entries| {
                entries
                    .into_iter()
                    .zip(ids.clone())
                    .map(|((g, v, p, day), id)| entry(id, g, v, p, day))
                    .collect()
            },
        )
    }

    proptest! {
        /// Whatever the two profiles hold, the survivor ends with each entry once (the earliest
        /// of its kind), every kind of dislike either held, all of its own likes, and no group
        /// filled beyond its limit by the duplicate's likes.
        #[test]
        fn a_merge_never_overfills_or_loses_what_to_avoid(
            survivor in held(0..100),
            duplicate in held(100..200),
        ) {
            let groups = defaults();
            let kept = merged_entries(&groups, &survivor, &duplicate);
            let all: Vec<&HeldEntry<u32>> = survivor.iter().chain(&duplicate).collect();
            let kept_entries: Vec<&HeldEntry<u32>> =
                all.iter().copied().filter(|e| kept.contains(&e.id)).collect();
            prop_assert_eq!(kept_entries.len(), kept.len(), "only ids of the inputs");
            let kinds: BTreeSet<_> = kept_entries.iter().map(|e| e.key()).collect();
            prop_assert_eq!(kinds.len(), kept.len(), "each entry once");
            for e in &kept_entries {
                prop_assert!(
                    all.iter().all(|o| o.key() != e.key() || (o.recorded_at, o.id) >= (e.recorded_at, e.id)),
                    "the earliest of its kind"
                );
            }
            for e in all.iter().filter(|e| !e.like) {
                prop_assert!(kinds.contains(&e.key()), "{:?} is kept", e);
            }
            for e in survivor.iter().filter(|e| e.like) {
                prop_assert!(kinds.contains(&e.key()), "the survivor's {:?} is kept", e);
            }
            for g in &groups {
                let own: BTreeSet<_> = survivor
                    .iter()
                    .filter(|e| e.like && e.group == g.name)
                    .map(|e| e.key())
                    .collect();
                let likes = kept_entries.iter().filter(|e| e.like && e.group == g.name).count() as i64;
                prop_assert!(likes <= g.likes_limit.max(own.len() as i64));
                // A like of the duplicate's left out means the group is full, of later ones.
                let first = |e: &HeldEntry<u32>| {
                    all.iter().all(|o| o.key() != e.key() || (o.recorded_at, o.id) >= (e.recorded_at, e.id))
                };
                for left in duplicate.iter().filter(|e| {
                    e.like && e.group == g.name && !own.contains(&e.key()) && first(e) && !kept.contains(&e.id)
                }) {
                    prop_assert!(likes >= g.likes_limit, "{:?} had room", left);
                    prop_assert!(kept_entries.iter().all(|k| !k.like || k.group != g.name
                        || own.contains(&k.key()) || (k.recorded_at, k.id) > (left.recorded_at, left.id)));
                }
            }
            prop_assert!(
                kept_entries.iter().all(|e| !e.like || e.group != "spa" || survivor.iter().any(|s| s.key() == e.key())),
                "no like of the duplicate's joins a group the chain does not define"
            );
        }
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
