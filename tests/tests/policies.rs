//! Every RPC in the contracts has exactly one row in its service's policy table, and no row
//! names a method that does not exist — so nothing is exposed by accident or guarded by a typo.

use guestloop_kit::server::ServiceDefinition;
use prost::Message;
use prost_types::FileDescriptorSet;

const DEFINITIONS: [&ServiceDefinition; 5] = [
    &guestloop_complaints::DEFINITION,
    &guestloop_crm::DEFINITION,
    &guestloop_facilities::DEFINITION,
    &guestloop_audit::DEFINITION,
    &guestloop_gateway::DEFINITION,
];

fn methods_of(set: &FileDescriptorSet, full_service: &str) -> Vec<String> {
    set.file
        .iter()
        .flat_map(|file| {
            let package = file.package().to_string();
            file.service.iter().filter_map(move |service| {
                let name = format!("{package}.{}", service.name());
                (name == full_service).then(|| {
                    service
                        .method
                        .iter()
                        .map(|m| format!("/{name}/{}", m.name()))
                        .collect::<Vec<_>>()
                })
            })
        })
        .flatten()
        .collect()
}

#[test]
fn every_rpc_has_one_policy_row_and_every_row_an_rpc() -> anyhow::Result<()> {
    let set = FileDescriptorSet::decode(guestloop_proto::FILE_DESCRIPTOR_SET)?;
    let kit_methods: Vec<String> = [
        "guestloop.common.v1.Diagnostics",
        "guestloop.common.v1.EventFeed",
    ]
    .iter()
    .flat_map(|s| methods_of(&set, s))
    .collect();
    for definition in DEFINITIONS {
        let mut expected = methods_of(&set, definition.grpc_service);
        expected.extend(kit_methods.iter().cloned());
        let mut covered: Vec<&str> = definition.policy.methods().collect();
        covered.sort_unstable();
        let before = covered.len();
        covered.dedup();
        assert_eq!(
            before,
            covered.len(),
            "{}: duplicate policy rows",
            definition.name
        );
        for method in &expected {
            assert!(
                covered.contains(&method.as_str()),
                "{}: no policy for {method}",
                definition.name
            );
        }
        for row in &covered {
            assert!(
                expected.iter().any(|m| m == row),
                "{}: policy row for unknown method {row}",
                definition.name
            );
        }
    }
    Ok(())
}
