//! The environment of a function's container, from its spec, its Stack's
//! outputs and its next hops in service chains.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::EnvVar;

use super::{NextHop, ResolvedStack};
use crate::api::NetworkFunction;
use crate::render::RenderError;
use crate::render::stack::{output_env_name, validate_output_names};

/// The prefix of the environment variables naming the next hop in `chain`:
/// `CHAIN_` and the chain name upper-cased, with every character other than a
/// letter or digit (in Kubernetes names, `-` and `.`) replaced by `_`
/// (`n6-egress` -> `CHAIN_N6_EGRESS`). The chain, not the function, names
/// the variables, so a function that is a hop in several chains has one
/// `CHAIN_<CHAIN>_NEXT_HOST`/`_PORT` pair per chain and can route each flow.
pub fn chain_env_prefix(chain: &str) -> String {
    let chain: String = chain
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("CHAIN_{chain}")
}

/// The container's environment: `spec.env` in its order, then the stack
/// outputs (when `spec.stackOutputs`) sorted by variable name, then the next
/// hops sorted by chain name. Each variable appears once: Kubernetes keys
/// `env` by name, so a duplicate would make server-side apply fail.
pub(super) fn container_env(
    nf: &NetworkFunction,
    stack: &ResolvedStack,
    next_hops: &[NextHop],
) -> Result<Vec<EnvVar>, RenderError> {
    let mut env = Env::default();
    for (i, var) in nf.spec.env.iter().enumerate() {
        env.push(var.clone(), format!("spec.env[{i}]"))?;
    }
    if nf.spec.stack_outputs {
        validate_output_names(stack.outputs.keys().map(String::as_str))?;
        let by_variable: BTreeMap<String, (&String, &String)> = stack
            .outputs
            .iter()
            .map(|(output, value)| (output_env_name(output), (output, value)))
            .collect();
        for (variable, (output, value)) in by_variable {
            env.push(
                plain(variable, value),
                format!("output {output} of stack {}", stack.name),
            )?;
        }
    }
    let mut hops: Vec<&NextHop> = next_hops.iter().collect();
    hops.sort_by(|a, b| a.chain.cmp(&b.chain).then(a.host.cmp(&b.host)));
    if let Some(pair) = hops.windows(2).find(|pair| pair[0].chain == pair[1].chain) {
        return Err(RenderError::RepeatedInChain {
            chain: pair[0].chain.clone(),
            first: pair[0].host.clone(),
            second: pair[1].host.clone(),
        });
    }
    for hop in hops {
        let prefix = chain_env_prefix(&hop.chain);
        let source = format!("service chain {} (next hop {})", hop.chain, hop.host);
        env.push(
            plain(format!("{prefix}_NEXT_HOST"), &hop.host),
            source.clone(),
        )?;
        if let Some(port) = hop.port {
            env.push(
                plain(format!("{prefix}_NEXT_PORT"), &port.to_string()),
                source,
            )?;
        }
    }
    Ok(env.vars)
}

/// Environment variables in order, with where each came from.
#[derive(Default)]
struct Env {
    vars: Vec<EnvVar>,
    sources: BTreeMap<String, String>,
}

impl Env {
    fn push(&mut self, var: EnvVar, source: String) -> Result<(), RenderError> {
        if let Some(first) = self.sources.get(&var.name) {
            return Err(RenderError::DuplicateEnv {
                name: var.name,
                first: first.clone(),
                second: source,
            });
        }
        self.sources.insert(var.name.clone(), source);
        self.vars.push(var);
        Ok(())
    }
}

fn plain(name: String, value: &str) -> EnvVar {
    EnvVar {
        name,
        value: Some(value.to_string()),
        ..EnvVar::default()
    }
}
