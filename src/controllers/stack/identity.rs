//! Whom a Stack's objects are written as: its ServiceAccount, so that the API
//! server enforces what that ServiceAccount may do, else the operator.

use kube::Client;

use super::{Context, locked};
use crate::{Result, api::Stack, runtime::fence};

/// Whom a Stack's objects are written as, and the client that writes as them.
pub(super) struct Identity {
    pub client: Client,
    /// "ServiceAccount ns/name" or "the operator", for messages.
    pub who: String,
}

/// A Stack is written as its `serviceAccountName`, else as the operator's
/// default ServiceAccount (`STRATA_DEFAULT_SERVICE_ACCOUNT`) in the Stack's
/// namespace, else as the operator.
pub(super) fn identity_of(stack: &Stack, ctx: &Context, ns: &str) -> Result<Identity> {
    let account = stack
        .spec
        .service_account_name
        .as_deref()
        .or(ctx.settings.default_service_account.as_deref());
    Ok(match account {
        Some(sa) => Identity {
            client: impersonating(ctx, ns, sa)?,
            who: format!("ServiceAccount {ns}/{sa}"),
        },
        None => Identity {
            client: ctx.client.clone(),
            who: "the operator".to_string(),
        },
    })
}

/// A client that makes every request as ServiceAccount `name` of `namespace`
/// (one per ServiceAccount, kept for the process's term).
fn impersonating(ctx: &Context, namespace: &str, name: &str) -> Result<Client> {
    let user = format!("system:serviceaccount:{namespace}:{name}");
    let mut clients = locked(&ctx.state.impersonated);
    if let Some(client) = clients.get(&user) {
        return Ok(client.clone());
    }
    let mut config = ctx.config.clone();
    // Only the user: the API server adds a ServiceAccount's groups itself,
    // and impersonating groups would need `impersonate` on any group.
    config.auth_info.impersonate = Some(user.clone());
    let client = fence::client(config, ctx.fence.clone(), ctx.metrics.clone())?;
    clients.insert(user, client.clone());
    Ok(client)
}
