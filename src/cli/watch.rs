//! `--watch`: draw, then draw again whenever a NetworkFunction, Stack or
//! ServiceChain in the namespace changes (a watch, not a poll), printing
//! only when the drawing differs. On a terminal each drawing replaces the
//! last; in a pipe drawings follow one another, a blank line apart. Ends
//! on Ctrl-C with the exit status of the last drawing.

use std::future::Future;
use std::io::{IsTerminal, Write};

use futures::{FutureExt, StreamExt, stream::BoxStream};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

use super::{Result, Verdict};
use crate::api::{NetworkFunction, ServiceChain, Stack};

/// "Something changed" from a watch of kind `K` in `namespace`.
fn changes<K>(client: &Client, namespace: &str) -> BoxStream<'static, ()>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    watcher(api, watcher::Config::default())
        .default_backoff()
        .map(|_| ())
        .boxed()
}

/// Draws with `draw` until interrupted, again on every change.
pub async fn redraw<F, Fut>(client: &Client, namespace: &str, mut draw: F) -> Result<Verdict>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(String, Verdict)>>,
{
    let mut changes = futures::stream::select_all([
        changes::<NetworkFunction>(client, namespace),
        changes::<Stack>(client, namespace),
        changes::<ServiceChain>(client, namespace),
    ]);
    let terminal = std::io::stdout().is_terminal();
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let mut last: Option<String> = None;
    loop {
        let (text, verdict) = draw().await?;
        if last.as_ref() != Some(&text) {
            let frame = match (terminal, &last) {
                (true, _) => {
                    // Clear the screen: not a colour, so not for anstream to drop.
                    let mut raw = std::io::stdout();
                    let _ = raw.write_all(b"\x1b[2J\x1b[H");
                    let _ = raw.flush();
                    text.clone()
                }
                (false, None) => text.clone(),
                (false, Some(_)) => format!("\n{text}"),
            };
            let mut out = anstream::stdout();
            let _ = out.write_all(frame.as_bytes());
            let _ = out.flush();
            last = Some(text);
        }
        tokio::select! {
            _ = &mut interrupted => return Ok(verdict),
            change = changes.next() => {
                if change.is_none() {
                    return Ok(verdict);
                }
                // A burst of changes (a rollout writes several objects)
                // is drawn once.
                while let Some(Some(())) = changes.next().now_or_never() {}
            }
        }
    }
}
