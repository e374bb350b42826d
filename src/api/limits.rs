//! Bounds on what a Strata object may hold, shared by the decoding of the
//! API types and the rendering of their children.

/// The deepest nesting of arrays and objects accepted in a Stack resource.
/// serde_json refuses more than 128 when parsing, but a `Value` built in code
/// may be deeper; walking it is iterative anyway, and this bound keeps the
/// recursive `Clone` and `Drop` of `Value` well within the stack.
pub const MAX_DEPTH: usize = 100;
