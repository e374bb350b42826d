//! The container environment: spec.env, stack outputs and next hops.

use super::*;

#[test]
fn next_hops_become_chain_environment_sorted_by_chain() {
    let hops = [
        NextHop {
            chain: "s1.backhaul".into(),
            host: "sgw.telco.svc".into(),
            port: None,
        },
        NextHop {
            chain: "n6-egress".into(),
            host: "cgnat.telco.svc".into(),
            port: Some(8080),
        },
    ];
    let children = desired(&function(UPF), &edge_net(), &hops).unwrap();
    let names: Vec<(String, String)> = env(&children).into_iter().skip(3).collect();
    assert_eq!(
        names,
        [
            ("CHAIN_N6_EGRESS_NEXT_HOST", "cgnat.telco.svc"),
            ("CHAIN_N6_EGRESS_NEXT_PORT", "8080"),
            ("CHAIN_S1_BACKHAUL_NEXT_HOST", "sgw.telco.svc"),
        ]
        .map(|(n, v)| (n.to_string(), v.to_string()))
    );
    let mut reversed = hops.clone();
    reversed.reverse();
    assert_eq!(
        desired(&function(UPF), &edge_net(), &reversed).unwrap(),
        children
    );
}

#[test]
fn chains_whose_names_collide_are_refused() {
    let hops = [
        NextHop {
            chain: "a-b".into(),
            host: "x.telco.svc".into(),
            port: None,
        },
        NextHop {
            chain: "a.b".into(),
            host: "y.telco.svc".into(),
            port: None,
        },
    ];
    assert_eq!(
        desired(&function(UPF), &edge_net(), &hops)
            .unwrap_err()
            .to_string(),
        "environment variable CHAIN_A_B_NEXT_HOST is set by both service chain a-b (next hop x.telco.svc) and service chain a.b (next hop y.telco.svc); rename one of them so that the container has each variable once"
    );
}

#[test]
fn stack_outputs_only_when_asked() {
    let names = |yaml: &str| {
        env(&render(yaml))
            .into_iter()
            .map(|(n, _)| n)
            .collect::<Vec<_>>()
    };
    assert_eq!(names(UPF), ["MODE", "STACK_APN", "STACK_DNSUPSTREAM"]);
    assert_eq!(
        names(&UPF.replace("stackOutputs: true", "stackOutputs: false")),
        ["MODE"]
    );
}

#[test]
fn env_collisions_name_both_sources() {
    let clash = UPF.replace(
        "[{name: MODE, value: edge}]",
        "[{name: MODE, value: edge}, {name: STACK_APN, value: x}]",
    );
    assert_eq!(
        desired(&function(&clash), &edge_net(), &[])
            .unwrap_err()
            .to_string(),
        "environment variable STACK_APN is set by both spec.env[1] and output apn of stack edge-net; rename one of them so that the container has each variable once"
    );
    let twice = UPF.replace(
        "[{name: MODE, value: edge}]",
        "[{name: MODE, value: edge}, {name: MODE, value: core}]",
    );
    assert_eq!(
        desired(&function(&twice), &edge_net(), &[]).unwrap_err(),
        RenderError::DuplicateEnv {
            name: "MODE".into(),
            first: "spec.env[0]".into(),
            second: "spec.env[1]".into()
        }
    );
}

#[test]
fn chain_prefixes() {
    assert_eq!(chain_env_prefix("n6-egress"), "CHAIN_N6_EGRESS");
    assert_eq!(chain_env_prefix("s1.backhaul-2"), "CHAIN_S1_BACKHAUL_2");
}

#[test]
fn stack_outputs_are_sorted_by_variable_name() {
    // "a_b" sorts before "aB" as an output name, after it as a variable.
    let stack = ResolvedStack {
        outputs: BTreeMap::from([("a_b".into(), "1".into()), ("aC".into(), "2".into())]),
        ..edge_net()
    };
    let children = desired(&function(UPF), &stack, &[]).unwrap();
    let names: Vec<String> = env(&children).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["MODE", "STACK_AC", "STACK_A_B"]);
}

#[test]
fn a_function_twice_in_one_chain_is_refused() {
    let hops = [
        NextHop {
            chain: "loop".into(),
            host: "nat.telco.svc".into(),
            port: None,
        },
        NextHop {
            chain: "loop".into(),
            host: "fw.telco.svc".into(),
            port: None,
        },
    ];
    assert_eq!(
        desired(&function(UPF), &edge_net(), &hops)
            .unwrap_err()
            .to_string(),
        "the function appears more than once in service chain loop (with next hops fw.telco.svc and nat.telco.svc); a function can be only one hop of a chain, because its pods get one next hop per chain"
    );
}
