//! Routing: compiled once per config into a [`RouteTable`]; `match_request` is on the hot path.
//!
//! Precedence, most specific first: exact host, then `*.suffix` hosts (longest suffix first), then
//! routes without a host; inside each, exact path before path template before prefix, longer
//! paths first (templates: compared segment by segment, a literal segment before a partial one
//! such as `{sid}.json` before a whole `{id}`), routes with methods or header conditions before
//! those without; ties go to declaration order.

mod matcher;
mod table;
mod template;

#[cfg(test)]
mod tests;

pub use matcher::{host_of, rewrite_path, Matcher};
pub use table::RouteTable;
pub use template::{PathTemplate, TemplateError};
